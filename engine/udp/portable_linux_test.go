package udp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/internal/realtime"
)

// The portable path (what macOS, iOS, Windows and the BSDs use) runs here
// on Linux beside the fast path, against the Linux sender.

// TestPortableRoundTrip: several portable listeners on one group each get
// every datagram, byte-exact, from the sender's address, with no kernel
// stamp (the receiver stamps them); IPv4 and IPv6.
func TestPortableRoundTrip(t *testing.T) {
	roundTrip(t, []string{"239.255.77.11", "ff15::7181"}, func(g Group) (datagram.Source, error) {
		c, err := ListenPortable(g)
		if err == nil && c.Group() != g {
			t.Errorf("group %v, want %v", c.Group(), g)
		}
		return c, err
	}, func(t *testing.T, m datagram.Message, _, _ int64) {
		if !m.Arrival.IsZero() {
			t.Errorf("portable path gave a stamp %v", m.Arrival)
		}
	})
}

// TestPortableSourceSpecific: a source-specific portable listener takes
// its source's datagrams and not another source's.
func TestPortableSourceSpecific(t *testing.T) {
	realtime.Exclusive(t)
	g := group(t, "232.7.7.17")
	g.Source = netip.MustParseAddr("127.0.0.1")
	c, err := ListenPortable(g)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendFromTwoSources(t, g)
	if m := readOne(t, c); string(m.Buf[:m.N]) != "genuine" {
		t.Fatalf("SSM socket got %q from %v", m.Buf[:m.N], m.From)
	}
}

// TestPortableReader: a portable reader on a unicast socket (the unicast
// client's) reads what is sent to it, flags a datagram that fills its
// buffer as truncated, and returns net.ErrClosed once closed.
func TestPortableReader(t *testing.T) {
	realtime.Exclusive(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := NewPortableReader(conn)
	peer, err := net.DialUDP("udp4", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.Write([]byte("hello"))
	peer.Write(bytes.Repeat([]byte{1}, 64))
	ms := []datagram.Message{{Buf: make([]byte, 32)}, {Buf: make([]byte, 32)}}
	if n, err := r.ReadBatch(ms); n != 1 || err != nil || string(ms[0].Buf[:ms[0].N]) != "hello" || ms[0].Truncated || ms[0].From != peer.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("first: %d %v %+v", n, err, ms[0])
	}
	if n, err := r.ReadBatch(ms); n != 1 || err != nil || !ms[0].Truncated || ms[0].N != 32 {
		t.Fatalf("oversized: %d %v %+v", n, err, ms[0])
	}
	done := make(chan error, 1)
	go func() { _, err := r.ReadBatch(ms); done <- err }()
	r.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock ReadBatch")
	}
}
