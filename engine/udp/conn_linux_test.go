package udp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/wire"
)

// group is a group on addr with a port of its own, so tests and packages
// running side by side do not hear each other.
func group(t *testing.T, addr string) Group {
	t.Helper()
	ap := netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(freeport.One(t)))
	return Group{Addr: ap, Hops: DefaultHops}
}

// readOne reads one datagram from c or fails after a second.
func readOne(t *testing.T, c datagram.Source) datagram.Message {
	t.Helper()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(time.Second):
			c.Close()
		}
	}()
	ms := []datagram.Message{{Buf: make([]byte, 2000)}}
	n, err := c.ReadBatch(ms)
	if err != nil || n != 1 {
		t.Fatalf("read: %d, %v", n, err)
	}
	return ms[0]
}

// TestLoopbackRoundTrip sends a batch to a group on lo, IPv4 and IPv6, and
// checks that several sockets each get every datagram, with a kernel stamp
// close to the send time, from the sender's address.
func TestLoopbackRoundTrip(t *testing.T) {
	roundTrip(t, []string{"239.255.77.1", "ff15::7171"}, func(g Group) (datagram.Source, error) { return Listen(g) },
		func(t *testing.T, m datagram.Message, before, after int64) {
			if at := m.Arrival.UnixNano(); m.Arrival.IsZero() || at < before || at > after+int64(time.Second) {
				t.Errorf("stamp %v outside [%d, %d]", m.Arrival, before, after)
			}
		})
}

// roundTrip sends a batch to a group on lo (each of addrs) and checks that
// three sockets from listen each get every datagram, byte-exact, from the
// sender's address; check judges each message's stamp against the send.
func roundTrip(t *testing.T, addrs []string, listen func(Group) (datagram.Source, error), check func(t *testing.T, m datagram.Message, before, after int64)) {
	realtime.Exclusive(t)
	for _, addr := range addrs {
		t.Run(addr, func(t *testing.T) {
			g := group(t, addr)
			var conns []datagram.Source
			for range 3 {
				c, err := listen(g)
				if err != nil {
					if netip.MustParseAddr(addr).Is6() && !hasIPv6Loopback() {
						t.Skipf("no IPv6 on lo here: %v", err)
					}
					t.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
			}
			s, err := NewSender(g)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			before := time.Now().UnixNano()
			dgs := [][]byte{[]byte("one"), []byte("two"), bytes.Repeat([]byte{7}, 1200)}
			if n, err := s.Send(wire.TypeAnnounce, dgs); n != 3 || err != nil {
				if errors.Is(err, syscall.ENETUNREACH) && g.Addr.Addr().Is6() {
					t.Skip("IPv6 multicast has no route on lo without changing the host's routes; the namespace tests cover IPv6")
				}
				t.Fatalf("send: %d, %v", n, err)
			}
			after := time.Now().UnixNano()
			for i, c := range conns {
				for j, want := range dgs {
					m := readOne(t, c)
					if !bytes.Equal(m.Buf[:m.N], want) || m.Truncated || !m.From.Addr().IsLoopback() {
						t.Fatalf("socket %d datagram %d: %q truncated %v from %v", i, j, m.Buf[:m.N], m.Truncated, m.From)
					}
					check(t, m, before, after)
				}
			}
		})
	}
}

func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestSenderPinned checks the safety defaults: a sender on lo sends from
// lo's address with IP_MULTICAST_IF on lo and TTL 0, and an explicit hop
// limit is kept.
func TestSenderPinned(t *testing.T) {
	realtime.Exclusive(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		hops int
		want int
	}{{"239.255.77.2", DefaultHops, 0}, {"239.255.77.2", 3, 3}, {"ff15::7172", DefaultHops, 0}} {
		g := group(t, c.addr)
		g.Hops = c.hops
		s, err := NewSender(g)
		if err != nil {
			if g.Addr.Addr().Is6() && !hasIPv6Loopback() {
				continue
			}
			t.Fatal(err)
		}
		ifindex, hops, err := multicastOptions(s.conn, g.Addr.Addr().Is4())
		local := s.conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if (ifindex != lo.Index && ifindex != -1) || hops != c.want || !local.IsLoopback() {
			t.Errorf("%s hops %d: ifindex %d, hop limit %d, source %v; want lo (%d), %d, loopback", c.addr, c.hops, ifindex, hops, local, lo.Index, c.want)
		}
	}
}

// multicastOptions reads back the egress interface index and hop limit the
// kernel holds for c.
func multicastOptions(c net.PacketConn, v4 bool) (ifindex, hops int, err error) {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v4 {
			// IPv4's getsockopt(IP_MULTICAST_IF) reports an address, never the
			// index x/net sets; TestLoopbackRoundTrip shows the egress (only
			// sockets joined on lo hear it), so report lo's index as -1.
			ifindex = -1
			hops, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_TTL)
			return
		}
		if ifindex, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF); serr == nil {
			hops, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS)
		}
	})
	return ifindex, hops, errors.Join(err, serr)
}

// TestSourceSpecific: a source-specific join takes the named source's
// datagrams and not another's.
func TestSourceSpecific(t *testing.T) {
	realtime.Exclusive(t)
	g := group(t, "232.7.7.7")
	g.Source = netip.MustParseAddr("127.0.0.1")
	c, err := Listen(g)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendFromTwoSources(t, g)
	m := readOne(t, c)
	if got := string(m.Buf[:m.N]); got != "genuine" {
		t.Fatalf("SSM socket got %q from %v", got, m.From)
	}
}

// sendFromTwoSources sends "intruder" to g from 127.0.0.2, another source
// than g's, then "genuine" from a Sender (127.0.0.1): a source-specific
// listener must read "genuine" first.
func sendFromTwoSources(t *testing.T, g Group) {
	t.Helper()
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	lo, _ := net.InterfaceByName("lo")
	p := ipv4.NewPacketConn(other)
	if err := errors.Join(p.SetMulticastInterface(lo), p.SetMulticastTTL(0), p.SetMulticastLoopback(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.WriteTo([]byte("intruder"), net.UDPAddrFromAddrPort(g.Addr)); err != nil {
		t.Fatal(err)
	}
	s, err := NewSender(g)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(wire.TypeAnnounce, [][]byte{[]byte("genuine")}); err != nil {
		t.Fatal(err)
	}
}

// TestOtherGroupsNotHeard: a socket hears only its own group, neither
// another group this host joined on the same port nor unicast to the port.
func TestOtherGroupsNotHeard(t *testing.T) {
	realtime.Exclusive(t)
	a := group(t, "239.255.77.3")
	b := a
	b.Addr = netip.AddrPortFrom(netip.MustParseAddr("239.255.77.4"), a.Addr.Port())
	ca, err := Listen(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := Listen(b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	u, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", a.Addr.Port()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte("unicast")); err != nil {
		t.Fatal(err)
	}
	u.Close()
	for i, g := range []Group{b, a} {
		s, err := NewSender(g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Send(wire.TypeAnnounce, [][]byte{[]byte(fmt.Sprint("to ", i))}); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if m := readOne(t, ca); string(m.Buf[:m.N]) != "to 1" {
		t.Fatalf("group a heard %q", m.Buf[:m.N])
	}
}

func TestClosedRead(t *testing.T) {
	realtime.Exclusive(t)
	c, err := Listen(group(t, "239.255.77.5"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.ReadBatch([]datagram.Message{{Buf: make([]byte, 10)}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// TestSendFailureCountsNothing: a send the kernel refuses outright
// (sendmmsg returns −1: here an IPv6 group with no multicast route on
// loopback, or a closed socket) reports 0 datagrams sent with the error;
// the −1 used to come through, and an edge summed it into its counters.
func TestSendFailureCountsNothing(t *testing.T) {
	s, err := NewSender(group(t, "ff15::77"))
	if err != nil {
		t.Skipf("no IPv6 multicast sender on loopback: %v", err)
	}
	dgs := [][]byte{[]byte("a"), []byte("b")}
	if n, err := s.Send(wire.TypeRelease, dgs); err == nil {
		// This host routes the group: make the kernel refuse instead.
		s.Close()
		n, err = s.Send(wire.TypeRelease, dgs)
		if n != 0 || err == nil {
			t.Fatalf("send on a closed socket: %d, %v; want 0 and an error", n, err)
		}
		return
	} else if n != 0 {
		t.Fatalf("refused send: %d sent (%v), want 0", n, err)
	}
	s.Close()
}
