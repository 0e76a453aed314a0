package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

const (
	// runDir is where `ip netns` keeps the bind mounts that name namespaces.
	runDir = "/var/run/netns"
	// ifname is every host's interface. It is chosen inside the host's own
	// namespace, so it cannot collide with anything outside it.
	ifname = "eth0"
	bridge = "br0"
	// ipTimeout bounds one ip invocation so a wedged kernel fails the test
	// instead of hanging it.
	ipTimeout = 30 * time.Second
	// readyTimeout bounds the wait for carriers and bridge ports to come up.
	readyTimeout = 10 * time.Second
)

// available is probed once: the answer cannot change while a test binary runs.
var available = sync.OnceValue(probe)

// Available reports why labs cannot be built here (not root, no `ip`,
// creating a network namespace not permitted), wrapping ErrUnavailable, or
// nil.
func Available() error { return available() }

func probe() error {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Errorf("%w: need root to build network namespaces (euid %d)", ErrUnavailable, euid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: iproute2 not installed: %v", ErrUnavailable, err)
	}
	if err := probeUnshare(); err != nil {
		return fmt.Errorf("%w: cannot create a network namespace: %v", ErrUnavailable, err)
	}
	return nil
}

// Build builds a lab of n hosts (1 ≤ n ≤ 200); the caller must Close it.
// When namespaces cannot be built here the error wraps ErrUnavailable with
// Available's reason. Labs a killed process left behind are swept first,
// and each one swept is reported to log (which may be nil). Tests build
// labs through netnstest.New, which skips and cleans up for them.
func Build(n int, log func(msg string)) (*Lab, error) {
	if n < 1 || n > maxHosts {
		return nil, fmt.Errorf("netns: lab of %d hosts: want 1 to %d", n, maxHosts)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	l, swept, err := build(n)
	if log != nil {
		for _, msg := range swept {
			log(msg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	return l, nil
}

// Close deletes every namespace of the lab. It is idempotent.
func (l *Lab) Close() error {
	if err := l.teardown(); err != nil {
		return fmt.Errorf("netns: close lab %s: %w", l.id, err)
	}
	return nil
}

// build sweeps abandoned labs, claims a tag and builds the lab, tearing
// down whatever a failed build left.
func build(n int) (*Lab, []string, error) {
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, nil, err
	}
	swept := sweep(ip)
	tag, lock, err := claim()
	if err != nil {
		return nil, swept, err
	}
	id := labID(tag)
	l := &Lab{id: id, hub: id + "hub", ip: ip, lock: lock}
	if err := l.build(tag, n); err != nil {
		return nil, swept, errors.Join(fmt.Errorf("lab %s: %w", l.id, err), l.teardown())
	}
	return l, swept, nil
}

// addresses derives the lab's subnets from its tag, so that addresses seen in
// a packet capture tell which lab they came from.
func addresses(b [3]byte, i int) (v4, v6 netip.Addr) {
	v4 = netip.AddrFrom4([4]byte{10, b[0], b[1], byte(i + 1)})
	v6 = netip.AddrFrom16([16]byte{0xfd, 0, b[0], b[1], 0, b[2], 14: byte((i + 1) >> 8), 15: byte(i + 1)})
	return v4, v6
}

func (l *Lab) build(tag [3]byte, n int) error {
	for i := range n {
		v4, v6 := addresses(tag, i)
		l.hosts = append(l.hosts, &Host{
			Name:   fmt.Sprintf("%sh%d", l.id, i),
			Ifname: ifname,
			IPv4:   v4,
			IPv6:   v6,
		})
	}
	var add strings.Builder
	fmt.Fprintf(&add, "netns add %s\n", l.hub)
	for _, h := range l.hosts {
		fmt.Fprintf(&add, "netns add %s\n", h.Name)
	}
	// The only ip run without -n: it creates namespaces, nothing in them.
	if err := l.run(add.String(), "-batch", "-"); err != nil {
		return err
	}
	if err := l.sysctls(); err != nil {
		return err
	}
	if err := l.run(l.hubScript(), "-n", l.hub, "-batch", "-"); err != nil {
		return err
	}
	if err := l.configureHosts(); err != nil {
		return err
	}
	return l.waitReady()
}

// sysctls must run before the veths exist: interfaces copy a namespace's
// "default" settings when they are registered.
func (l *Lab) sysctls() error {
	// The hub only switches frames; an IPv6 stack there would add its own
	// router solicitations and MLD reports to every capture.
	if err := writeSysctls(l.hub, "net/ipv6/conf/default/disable_ipv6", "1"); err != nil {
		return err
	}
	for _, h := range l.hosts {
		// Without this the link-local address stays tentative for a second
		// or more after the link comes up, and link-scope multicast (ff02::)
		// goes out from the ULA meanwhile: seen on Linux 6.18.
		if err := writeSysctls(h.Name, "net/ipv6/conf/all/accept_dad", "0", "net/ipv6/conf/default/accept_dad", "0"); err != nil {
			return err
		}
	}
	return nil
}

func writeSysctls(ns string, kv ...string) error {
	// /proc/sys/net resolves against the namespace of the thread that opens
	// it, which inside do is ns.
	return do(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			if err := os.WriteFile("/proc/sys/"+kv[i], []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("sysctl in %s: %w", ns, err)
			}
		}
		return nil
	})
}

// hubScript creates the bridge and every veth pair inside the hub; each
// host's end is born in the host's namespace under its final name, so no link
// ever exists, even briefly, in the namespace ip was started in.
func (l *Lab) hubScript() string {
	var b strings.Builder
	b.WriteString("link set dev lo up\n")
	// Snooping off: the bridge floods multicast to every port instead of
	// waiting for IGMP/MLD reports that a test may not have sent yet.
	fmt.Fprintf(&b, "link add name %s type bridge mcast_snooping 0\n", bridge)
	fmt.Fprintf(&b, "link set dev %s up\n", bridge)
	for i, h := range l.hosts {
		fmt.Fprintf(&b, "link add name p%d type veth peer name %s netns %s\n", i, h.Ifname, h.Name)
		fmt.Fprintf(&b, "link set dev p%d master %s up\n", i, bridge)
	}
	return b.String()
}

// configureHosts runs one ip per host (ip -batch cannot switch namespaces
// between lines), a few at a time: the kernel serializes most of the work on
// the rtnl lock anyway.
func (l *Lab) configureHosts() error {
	sem := make(chan struct{}, max(4, runtime.GOMAXPROCS(0)))
	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			script := fmt.Sprintf("link set dev lo up\n"+
				"link set dev %[1]s up\n"+
				"address add %[2]s/24 dev %[1]s\n"+
				"address add %[3]s/64 dev %[1]s nodad\n"+
				// Sockets that name the interface work without it; sockets
				// that do not would otherwise get ENETUNREACH. IPv6 needs no
				// such line: bringing the link up adds ff00::/8 to the local
				// table.
				"route add 224.0.0.0/4 dev %[1]s\n",
				h.Ifname, h.IPv4, h.IPv6)
			errs[i] = l.run(script, "-n", h.Name, "-batch", "-")
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitReady returns once every host interface and every bridge port is
// operationally up. Carrier changes reach the bridge through the kernel's
// link watch, so they can trail the ip commands that caused them.
func (l *Lab) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	pending := append([]*Host(nil), l.hosts...)
	for {
		var err error
		pending, err = l.notRunning(pending)
		if err != nil {
			return err
		}
		hubErr := do(l.hub, func() error { return allRunning(len(l.hosts)) })
		if len(pending) == 0 && hubErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			if len(pending) > 0 {
				return fmt.Errorf("%s %s not running after %v", pending[0].Name, pending[0].Ifname, readyTimeout)
			}
			return fmt.Errorf("hub %s: %w after %v", l.hub, hubErr, readyTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *Lab) notRunning(hosts []*Host) ([]*Host, error) {
	var out []*Host
	for _, h := range hosts {
		var up bool
		err := h.Do(func() error {
			ifi, err := net.InterfaceByName(h.Ifname)
			up = err == nil && ifi.Flags&net.FlagRunning != 0
			return err
		})
		if err != nil {
			return nil, err
		}
		if !up {
			out = append(out, h)
		}
	}
	return out, nil
}

// allRunning checks, inside the hub, that the bridge and all n ports are up.
func allRunning(n int) error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	running := 0
	for _, ifi := range ifs {
		if ifi.Name != "lo" && ifi.Flags&net.FlagRunning != 0 {
			running++
		}
	}
	if running != n+1 {
		return fmt.Errorf("%d of %d bridge ports and bridge running", running, n+1)
	}
	return nil
}

// teardown deletes every namespace whose name carries the lab's id, then
// releases the lab's lock. It is idempotent. If a namespace survives, the
// lock file stays (unlocked) so that the next Build retries the deletion.
func (l *Lab) teardown() error {
	err := deleteLab(l.ip, l.id)
	if l.lock != nil {
		if err == nil {
			err = os.Remove(l.lock.Name())
		}
		err = errors.Join(err, l.lock.Close())
		l.lock = nil
	}
	return err
}

// run runs ip with args and script on stdin.
func (l *Lab) run(script string, args ...string) error {
	return runIP(l.ip, script, args...)
}

func runIP(ip, script string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, args...)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
