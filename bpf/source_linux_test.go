package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/wire"
)

// ipPacket is what BPF_PROG_TEST_RUN needs to give the filter a network
// header: Ethernet, then an IPv4 or IPv6 header from src, then the
// datagram. The kernel leaves skb->data at the IP header, so the filter
// finds no UDP header there and passes what it does not drop for its
// source as unparsed: these runs test the source check only.
func ipPacket(src netip.Addr, dg []byte) []byte {
	if src.Is4() {
		p := make([]byte, 14+20+len(dg))
		binary.BigEndian.PutUint16(p[12:], unix.ETH_P_IP)
		ip := p[14:]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(dg)))
		ip[8], ip[9] = 64, unix.IPPROTO_UDP
		a := src.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], []byte{127, 0, 0, 1})
		copy(ip[20:], dg)
		return p
	}
	p := make([]byte, 14+40+len(dg))
	binary.BigEndian.PutUint16(p[12:], unix.ETH_P_IPV6)
	ip := p[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(dg)))
	ip[6], ip[7] = unix.IPPROTO_UDP, 64
	a := src.As16()
	copy(ip[8:], a[:])
	ip[39] = 1
	copy(ip[40:], dg)
	return p
}

// TestSourceCheck runs the source check on IPv4 and IPv6 packets: with
// sources set, others are dropped and counted; the configured pass; with
// none set, nothing is dropped for its source.
func TestSourceCheck(t *testing.T) {
	f := newTestFilter(t)
	edge4, edge6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	dg := header(wire.TypeAnnounce, 0, 1, 1, 100)
	verdict := func(src netip.Addr) (uint32, map[string]uint64) {
		t.Helper()
		before := verdicts(t, f)
		ret, _, err := f.prog.Test(ipPacket(src, dg))
		if err != nil {
			t.Fatalf("prog test run: %v", err)
		}
		return ret, delta(before, verdicts(t, f))
	}
	others := []netip.Addr{netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("192.0.2.2")}
	for _, src := range append([]netip.Addr{edge4, edge6}, others...) {
		if ret, d := verdict(src); ret == 0 || d[VerdictSource] != 0 {
			t.Errorf("no sources set: %v dropped (%v)", src, d)
		}
	}
	if err := f.SetSources([]netip.Addr{edge4, netip.AddrFrom16(edge6.As16())}); err != nil {
		t.Fatal(err)
	}
	for _, src := range []netip.Addr{edge4, edge6} {
		if ret, d := verdict(src); ret == 0 || d[VerdictSource] != 0 {
			t.Errorf("configured %v dropped (%v)", src, d)
		}
	}
	for _, src := range others {
		if ret, d := verdict(src); ret != 0 || d[VerdictSource] != 1 {
			t.Errorf("%v: returned %d, counted %v; want dropped as %q", src, ret, d, VerdictSource)
		}
	}
	if err := f.SetSources(nil); err != nil {
		t.Fatal(err)
	}
	if ret, d := verdict(others[0]); ret == 0 || d[VerdictSource] != 0 {
		t.Errorf("sources cleared: %v still dropped (%v)", others[0], d)
	}
}

func TestSetSourcesRefuses(t *testing.T) {
	f := newTestFilter(t)
	many := make([]netip.Addr, MaxSources+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	for name, addrs := range map[string][]netip.Addr{"too many": many, "invalid": {{}}} {
		if err := f.SetSources(addrs); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	f.Close()
	if err := f.SetSources(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestRealSocketSources: on IPv4, IPv6 and IPv4-mapped sockets, datagrams
// from loopback are dropped in the kernel while the sources name another
// address, and read once they name loopback.
func TestRealSocketSources(t *testing.T) {
	realtime.Exclusive(t)
	f := newTestFilter(t)
	dg := header(wire.TypeAnnounce, 0, 1, 1, 100)
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			recv, send := socketPair(t, f, network)
			from := netip.MustParseAddr("127.0.0.1")
			if network == "udp6" {
				from = netip.IPv6Loopback()
			}
			phase := func(sources []netip.Addr, want string) {
				t.Helper()
				if err := f.SetSources(sources); err != nil {
					t.Fatal(err)
				}
				before := verdicts(t, f)
				for range 10 {
					write(t, send, dg)
				}
				d := waitCounted(t, f, before, 10)
				dgs, _ := readAll(t, recv, int(d[VerdictPass]), 200*time.Millisecond)
				if d[want] != 10 || len(dgs) != int(d[VerdictPass]) || !drained(t, recv) {
					t.Errorf("sources %v: counted %v, read %d; want 10 %s", sources, d, len(dgs), want)
				}
			}
			phase([]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, VerdictSource)
			phase([]netip.Addr{from}, VerdictPass)
			phase(nil, VerdictPass)
		})
	}
	f.SetSources(nil)
}
