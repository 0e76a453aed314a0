// Package netns builds throwaway network labs for privileged tests: n hosts,
// each its own network namespace with one veth port ("eth0") on a bridge that
// lives in a separate hub namespace, so multicast and unicast between "hosts"
// can be tested for real on one machine without touching the machine's own
// network. The root namespace is never modified: every link is created inside
// the hub with `ip -n`, and the hosts' ends are born directly in their
// namespaces. Build fails with ErrUnavailable when namespaces cannot be built
// (not root, no iproute2, namespaces not permitted); a lab left behind by a
// killed process is swept by the next Build. Host.Do runs code inside a
// host's namespace; sockets opened there stay in that namespace and may be
// used from anywhere. Tests build labs with netnstest.New, which skips and
// cleans up; this package does not import testing, because `embargo demo
// -netns` links it.
package netns

// What has run where (keep this current):
//
//   - Run on this project's development VM (Linux 6.18, amd64, iproute2
//     6.1.0) as root: every test, with -race, including 120-host labs; as an
//     unprivileged user, under `unshare -Ur` and without ip on PATH, where
//     every lab test skips with the reason. Cleanup checked after t.Fatal,
//     a panic (in the test and inside Do) and a -timeout kill (swept by the
//     next Build); `ip monitor all` in the root namespace saw no event during
//     a full run.
//   - Not run: any non-Linux build beyond compiling (GOOS=darwin).
