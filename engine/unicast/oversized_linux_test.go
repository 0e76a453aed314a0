package unicast_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// TestOversizedCounted: a datagram longer than any the protocol allows is
// dropped unanswered and counted malformed, like all bad input (it used to
// be dropped uncounted, because the socket truncates it before Handle).
func TestOversizedCounted(t *testing.T) {
	realtime.Exclusive(t)
	srv, err := unicast.NewServer(unicast.ServerConfig{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Senders: 1, Clock: ptp.NewSim(),
		Sessions: unicast.SessionConfig{Streams: []uint32{1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello := make([]byte, wire.HelloMinLen)
	if _, err := (&wire.Hello{Nonce: [wire.NonceLen]byte{1}, PadLen: wire.HelloMinLen - wire.HeaderLen - wire.NonceLen}).Encode(hello); err != nil {
		t.Fatal(err)
	}
	// A HELLO padded past the limit, then one of the allowed size.
	big := make([]byte, wire.MaxDatagram+100)
	copy(big, hello)
	const oversized = 3
	for range oversized {
		if _, err := c.Write(big); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 20*time.Second, "the HELLO answered", func() bool { return srv.Stats().Sessions.Hellos == 1 })
	st := srv.Stats().Sessions
	if st.Malformed != oversized || st.BytesOut != wire.CookieMsgLen || st.BytesIn < oversized*wire.MaxDatagram {
		t.Errorf("after %d oversized datagrams and a HELLO: malformed %d, bytes in %d, out %d", oversized, st.Malformed, st.BytesIn, st.BytesOut)
	}
	// The only answer is the COOKIE: one socket answers in order, so an
	// answer to an oversized datagram would come first.
	b := make([]byte, wire.MaxDatagram)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no answer to the HELLO: %v", err)
	}
	if h, err := wire.Peek(b[:n]); err != nil || h.Type != wire.TypeCookie {
		t.Errorf("first answer: %v %v, want the COOKIE", h.Type, err)
	}
}
