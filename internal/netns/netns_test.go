package netns_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/internal/realtime"
)

// timeout bounds every read and send loop, so a broken lab fails instead of
// hanging the test binary.
const timeout = 5 * time.Second

func TestAvailable(t *testing.T) {
	err := netns.Available()
	t.Logf("Available() = %v", err)
	if err != nil && !errors.Is(err, netns.ErrUnavailable) && !errors.Is(err, netns.ErrNotSupported) {
		t.Errorf("Available() = %v, want nil or wrapping ErrUnavailable or ErrNotSupported", err)
	}
}

func TestLabShape(t *testing.T) {
	realtime.Exclusive(t)
	start := time.Now()
	lab := netnstest.New(t, 3)
	t.Logf("3-host lab built in %v", time.Since(start))
	hosts := lab.Hosts()
	if len(hosts) != 3 {
		t.Fatalf("Hosts() has %d hosts, want 3", len(hosts))
	}
	seen := map[string]bool{}
	for i, h := range hosts {
		if lab.Host(i) != h {
			t.Errorf("Host(%d) != Hosts()[%d]", i, i)
		}
		if !h.IPv4.Is4() || !h.IPv6.Is6() || h.Ifname == "" || h.Name == "" {
			t.Errorf("host %d incomplete: %+v", i, h)
		}
		for _, k := range []string{h.Name, h.IPv4.String(), h.IPv6.String()} {
			if seen[k] {
				t.Errorf("host %d repeats %s", i, k)
			}
			seen[k] = true
		}
		// Inside its namespace a host sees only lo and its own interface,
		// with both addresses on it.
		err := h.Do(func() error {
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			if len(ifs) != 2 {
				return fmt.Errorf("%d interfaces, want lo and %s: %v", len(ifs), h.Ifname, ifs)
			}
			ifi, err := net.InterfaceByName(h.Ifname)
			if err != nil {
				return err
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				return err
			}
			got := fmt.Sprint(addrs)
			for _, want := range []string{h.IPv4.String() + "/24", h.IPv6.String() + "/64"} {
				if !strings.Contains(got, want) {
					return fmt.Errorf("addresses %s lack %s", got, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("host %d: %v", i, err)
		}
	}
}

func TestDoPropagates(t *testing.T) {
	realtime.Exclusive(t)
	h := netnstest.New(t, 1).Host(0)
	sentinel := errors.New("from f")
	if err := h.Do(func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want f's error", err)
	}
	func() {
		defer func() {
			if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "boom") {
				t.Errorf("recovered %v, want f's panic", p)
			}
		}()
		h.Do(func() error { panic("boom") })
	}()
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Do(func() error { runtime.Goexit(); return nil })
		returned = true
	}()
	<-done
	if returned {
		t.Error("Do returned after f called runtime.Goexit")
	}
}

// A multicast group and the socket operations that differ between families.
type family struct {
	name   string
	group  netip.Addr
	listen func(h *netns.Host, port int) (net.PacketConn, error)
	sender func(h *netns.Host) (net.PacketConn, error)
	source func(h *netns.Host, src netip.Addr) bool
}

var families = []family{
	{"IPv4", netip.MustParseAddr("239.255.77.1"), listen4, send4, func(h *netns.Host, a netip.Addr) bool { return a == h.IPv4 }},
	{"IPv6/site", netip.MustParseAddr("ff15::1234"), listen6, send6, func(h *netns.Host, a netip.Addr) bool { return a == h.IPv6 }},
	// Link-scope groups are sent from the link-local address.
	{"IPv6/link", netip.MustParseAddr("ff02::1234"), listen6, send6, func(_ *netns.Host, a netip.Addr) bool { return a.IsLinkLocalUnicast() }},
}

func listen4(h *netns.Host, port int) (c net.PacketConn, err error) {
	err = h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		if c, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
			return err
		}
		return ipv4.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: net.ParseIP("239.255.77.1")})
	})
	return c, err
}

func listen6(h *netns.Host, port int) (c net.PacketConn, err error) {
	err = h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		if c, err = net.ListenPacket("udp6", fmt.Sprintf("[::]:%d", port)); err != nil {
			return err
		}
		p := ipv6.NewPacketConn(c)
		for _, g := range []string{"ff15::1234", "ff02::1234"} {
			if err := p.JoinGroup(ifi, &net.UDPAddr{IP: net.ParseIP(g)}); err != nil {
				return err
			}
		}
		return nil
	})
	return c, err
}

func send4(h *netns.Host) (c net.PacketConn, err error) {
	err = h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		if c, err = net.ListenPacket("udp4", "0.0.0.0:0"); err != nil {
			return err
		}
		p := ipv4.NewPacketConn(c)
		return errors.Join(p.SetMulticastInterface(ifi), p.SetMulticastTTL(1))
	})
	return c, err
}

func send6(h *netns.Host) (c net.PacketConn, err error) {
	err = h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		if c, err = net.ListenPacket("udp6", "[::]:0"); err != nil {
			return err
		}
		p := ipv6.NewPacketConn(c)
		return errors.Join(p.SetMulticastInterface(ifi), p.SetMulticastHopLimit(1))
	})
	return c, err
}

// multicast sends from hosts[0] to the group until every other host has
// received it, with the sockets used outside Do as the package promises.
func multicast(t *testing.T, hosts []*netns.Host, fam family) {
	t.Helper()
	const port = 47001
	var rcvs []net.PacketConn
	for _, h := range hosts[1:] {
		c, err := fam.listen(h, port)
		if err != nil {
			t.Fatalf("listen on %s: %v", h.Name, err)
		}
		defer c.Close()
		rcvs = append(rcvs, c)
	}
	snd, err := fam.sender(hosts[0])
	if err != nil {
		t.Fatalf("sender on %s: %v", hosts[0].Name, err)
	}
	defer snd.Close()

	payload := fmt.Appendf(nil, "embargo %s %d", fam.name, time.Now().UnixNano())
	var wg sync.WaitGroup
	errs := make([]error, len(rcvs))
	for i, c := range rcvs {
		wg.Go(func() { errs[i] = receive(c, payload, func(a netip.Addr) bool { return fam.source(hosts[0], a) }) })
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	dst := &net.UDPAddr{IP: fam.group.AsSlice(), Port: port}
	// Resend until all have it: the first datagram can race nothing in a
	// ready lab, but a retry costs nothing and keeps the test honest about
	// what it checks (delivery), not timing.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	sends := 0
	defer func() {
		if sends > 1 {
			t.Logf("%s: delivered only after %d sends", fam.name, sends)
		}
	}()
send:
	for {
		sends++
		if _, err := snd.WriteTo(payload, dst); err != nil {
			t.Fatalf("send to %v: %v", dst, err)
		}
		select {
		case <-stop:
			break send
		case <-deadline:
			break send
		case <-tick.C:
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s on %s: %v", fam.name, hosts[i+1].Name, err)
		}
	}
}

// receive reads until it gets payload from a source accepted by from, or the
// deadline passes.
func receive(c net.PacketConn, payload []byte, from func(netip.Addr) bool) error {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for {
		n, src, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no datagram: %w", err)
		}
		if !bytes.Equal(buf[:n], payload) {
			continue
		}
		a := src.(*net.UDPAddr).AddrPort().Addr().Unmap().WithZone("")
		if !from(a) {
			return fmt.Errorf("datagram from %v, not the sender", a)
		}
		return nil
	}
}

func TestMulticast(t *testing.T) {
	realtime.Exclusive(t)
	lab := netnstest.New(t, 3)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) { multicast(t, lab.Hosts(), fam) })
	}
}

func TestUnicast(t *testing.T) {
	realtime.Exclusive(t)
	lab := netnstest.New(t, 2)
	a, b := lab.Host(0), lab.Host(1)
	for _, tc := range []struct {
		network  string
		from, to netip.Addr
	}{
		{"udp4", a.IPv4, b.IPv4},
		{"udp6", a.IPv6, b.IPv6},
	} {
		t.Run(tc.network, func(t *testing.T) {
			var srv, cli net.PacketConn
			err := b.Do(func() (err error) {
				srv, err = net.ListenPacket(tc.network, netip.AddrPortFrom(tc.to, 0).String())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			err = a.Do(func() (err error) {
				cli, err = net.ListenPacket(tc.network, netip.AddrPortFrom(tc.from, 0).String())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()

			// Echo once, so both directions are checked.
			go func() {
				buf := make([]byte, 1500)
				srv.SetReadDeadline(time.Now().Add(timeout))
				if n, src, err := srv.ReadFrom(buf); err == nil {
					srv.WriteTo(buf[:n], src)
				}
			}()
			payload := []byte("ping " + tc.network)
			if _, err := cli.WriteTo(payload, srv.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if err := receive(cli, payload, func(x netip.Addr) bool { return x == tc.to }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLargeLab builds the biggest lab tests are expected to use and checks
// that the bridge floods multicast to every port.
func TestLargeLab(t *testing.T) {
	realtime.Exclusive(t)
	if testing.Short() {
		t.Skip("120 namespaces; skipped in -short")
	}
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	const n = 120
	var built, used time.Duration
	start := time.Now()
	t.Run("lab", func(t *testing.T) {
		lab := netnstest.New(t, n)
		built = time.Since(start)
		multicast(t, lab.Hosts(), families[0])
		used = time.Since(start)
	})
	if built > 0 {
		t.Logf("%d-host lab: built in %v, torn down in %v", n, built, time.Since(start)-used)
	}
}
