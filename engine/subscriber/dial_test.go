package subscriber_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/wire"
)

// TestDialLocal: a Client dialled with Local sends from that address (on
// loopback, any 127/8 address is this host's), and without it from the
// one the kernel picks.
func TestDialLocal(t *testing.T) {
	for _, local := range []netip.Addr{netip.MustParseAddr("127.0.3.1"), {}} {
		// An edge of its own: a late retry of the last client's lands
		// nowhere.
		edge, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Skipf("no IPv4 loopback: %v", err)
		}
		defer edge.Close()
		at := edge.LocalAddr().(*net.UDPAddr).AddrPort()
		c, err := subscriber.Dial(subscriber.Config{Edge: at, Streams: []uint32{1}, Local: local})
		if err != nil {
			t.Fatal(err)
		}
		want := local
		if !want.IsValid() {
			want = at.Addr()
		}
		// The first datagram is the client's HELLO; the deadline only
		// keeps a broken run from hanging.
		edge.SetReadDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, wire.MaxDatagram)
		_, from, err := edge.ReadFromUDPAddrPort(b)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if from.Addr() != want {
			t.Errorf("Local %v: HELLO from %v, want %v", local, from.Addr(), want)
		}
	}
}
