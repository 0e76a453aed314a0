// Package daemontest runs the real time daemons (Debian's chrony and
// linuxptp) inside a test's network namespaces through
// internal/timedaemons, for tests of package ptp/daemon and the fault
// suite. Neither ever touches the host's clock: chronyd runs with -x (no
// clock control), ptp4l with free_running 1 (measure, never steer). Each
// is killed in t.Cleanup; the namespaces are the caller's
// (internal/netns/netnstest deletes them).
package daemontest
