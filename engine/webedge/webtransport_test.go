package webedge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/wire"
)

// startWT serves s over WebTransport on loopback and returns its URL and
// a client trusting its self-signed certificate.
func startWT(t *testing.T, s *Server) (string, *webtransport.Transport) {
	t.Helper()
	tlsConf, _, err := SelfSigned([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeWebTransport(ctx, pc, tlsConf) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeWebTransport: %v", err)
		}
		pc.Close()
	})
	roots := x509.NewCertPool()
	roots.AddCert(tlsConf.Certificates[0].Leaf)
	tr := &webtransport.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(func() { tr.Close() })
	return "https://" + pc.LocalAddr().String() + "/", tr
}

// openWT opens a session to url over tr, closed when the test ends.
func openWT(ctx context.Context, t *testing.T, tr *webtransport.Transport, url string) *webtransport.Session {
	t.Helper()
	_, sess, err := tr.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.CloseWithError(0, "") })
	return sess
}

// dialWT serves s over WebTransport and opens one browser's session to
// it, within 10 s.
func dialWT(t *testing.T, s *Server) (context.Context, *webtransport.Session) {
	t.Helper()
	url, tr := startWT(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	sess := openWT(ctx, t, tr, url)
	waitConns(t, s, 1)
	return ctx, sess
}

// release is a RELEASE datagram of period p.
func release(t *testing.T, p uint64) []byte {
	t.Helper()
	rel := wire.Release{Header: wire.Header{Stream: 1, Period: p}, ReleaseAt: 1, SentAt: 1, EdgeID: 1}
	b := make([]byte, wire.ReleaseLen)
	if _, err := rel.Encode(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWebTransport: a live RELEASE arrives as a datagram, everything
// else in order as frames on the session's one stream.
func TestWebTransport(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, _ := start(t, Config{})
	ctx, sess := dialWT(t, s)
	rel := release(t, 5)
	announce := [][]byte{[]byte("an ANNOUNCE shard, as far as the transport cares"), []byte("and the next")}
	s.Send(wire.TypeAnnounce, announce)
	str, err := sess.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 8)
	go ReadFrames(str, func(m []byte) { frames <- m })
	next := func() string {
		select {
		case m := <-frames:
			return string(m)
		case <-ctx.Done():
			t.Fatal("no frame on the session stream")
			return ""
		}
	}
	for _, want := range announce {
		if got := next(); got != string(want) {
			t.Fatalf("frame %q, want %q", got, want)
		}
	}
	// A later round comes on the same stream, not a new one.
	s.Send(wire.TypeAnnounce, [][]byte{[]byte("round 2")})
	if got := next(); got != "round 2" {
		t.Fatalf("frame %q, want %q", got, "round 2")
	}
	// A live RELEASE's first copy goes as a datagram, its second as a
	// frame on the stream, and the edge's further copies are not sent.
	// A datagram may be lost even on loopback: a new period's RELEASE
	// until one arrives.
	// A datagram later than the wait is an earlier period's: read past.
	sends := 0
	sent := map[string]bool{}
	for p := uint64(5); ; p++ {
		if p > 5 {
			rel = release(t, p)
		}
		sent[string(rel)] = true
		for range 3 { // the edge's copies
			s.Send(wire.TypeRelease, [][]byte{rel})
			sends++
		}
		if got := next(); got != string(rel) {
			t.Fatalf("stream frame %x, want the RELEASE %x", got, rel)
		}
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		var d []byte
		var err error
		for {
			if d, err = sess.ReceiveDatagram(dctx); err != nil || string(d) == string(rel) {
				break
			}
			if !sent[string(d)] {
				t.Fatalf("datagram %x, want a RELEASE sent (last %x)", d, rel)
			}
		}
		dcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no RELEASE datagram")
		}
	}
	s.Send(wire.TypeAnnounce, [][]byte{[]byte("after the RELEASE")})
	if got := next(); got != "after the RELEASE" {
		t.Fatalf("frame %q after the RELEASE's copies, want the next ANNOUNCE: a copy was sent twice", got)
	}
	if st := s.Stats(); st.CopiesSkipped != uint64(sends/3) {
		t.Errorf("CopiesSkipped = %d after %d sends of RELEASEs in threes, want %d", st.CopiesSkipped, sends, sends/3)
	}
	// A time request datagram is answered with a datagram. Copies of
	// the RELEASE above may still arrive first: they are read past, not
	// answered with another request, and a request is repeated at most
	// once a second (the edge's refill rate), so the test never spends
	// the session's budget of time requests.
	for {
		if err := sess.SendDatagram(timeRequest(7)); err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		var e wire.TimeEcho
		var err error
		for {
			var d []byte
			if d, err = sess.ReceiveDatagram(dctx); err != nil || e.Decode(d) == nil {
				break
			}
		}
		dcancel()
		if err == nil {
			if e.Origin != 7 {
				t.Fatalf("echo of origin %d, want 7", e.Origin)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no time echo")
		}
	}
	// A browser sends nothing else: one that does is closed and counted.
	if err := sess.SendDatagram([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitConns(t, s, 0)
	if st := s.Stats(); st.BadInput != 1 || st.Accepted != 1 {
		t.Errorf("BadInput, Accepted = %d, %d, want 1, 1", st.BadInput, st.Accepted)
	}
}

func TestSelfSignedValidity(t *testing.T) {
	if _, _, err := SelfSigned([]string{"localhost"}, time.Now(), MaxSelfSigned+time.Hour); !errors.Is(err, ErrConfig) {
		t.Errorf("15 days: %v, want ErrConfig", err)
	}
	c, _, err := SelfSigned([]string{"localhost"}, time.Now(), MaxSelfSigned)
	if err != nil {
		t.Fatal(err)
	}
	if leaf := c.Certificates[0].Leaf; leaf.NotAfter.Sub(leaf.NotBefore) > MaxSelfSigned {
		t.Errorf("valid %v, more than %v", leaf.NotAfter.Sub(leaf.NotBefore), MaxSelfSigned)
	}
}

// A WebTransport session that never accepts its streams stalls the
// writes to it: it is closed as slow, its queue bounded, and Send never
// waits for it.
func TestWebTransportNeverRead(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, _ := start(t, Config{Queue: 4, WriteWait: 100 * time.Millisecond})
	url, tr := startWT(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	openWT(ctx, t, tr, url)
	waitConns(t, s, 1)
	shard := make([]byte, 1200)
	for s.Stats().Slow == 0 {
		if ctx.Err() != nil {
			t.Fatal("a session that never reads was never closed")
		}
		if n, err := s.Send(wire.TypeAnnounce, [][]byte{shard}); n != 1 || err != nil {
			t.Fatalf("Send = %d, %v", n, err)
		}
		time.Sleep(time.Millisecond) // bounded load: at most 1,000 shards a second
	}
	waitConns(t, s, 0)
}

// A stream from the browser is bad input: the session is closed and
// counted, even while it is waiting for a datagram.
func TestWebTransportStreamFromBrowser(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, _ := start(t, Config{})
	ctx, sess := dialWT(t, s)
	str, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	str.Write([]byte("a page never opens a stream"))
	str.Close()
	waitConns(t, s, 0)
	if st := s.Stats(); st.BadInput != 1 {
		t.Errorf("BadInput = %d, want 1", st.BadInput)
	}
}

// TestWebTransportRetry: past RetryAbove handshakes a second from unproven
// addresses (here: every one), a browser is asked to prove its address
// with a QUIC Retry, and then connects.
func TestWebTransportRetry(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, _ := start(t, Config{RetryAbove: -1})
	dialWT(t, s)
	if st := s.Stats(); st.Retries == 0 || st.Accepted != 1 {
		t.Errorf("stats %+v, want Retries and the session accepted", st)
	}
}

// TestWebTransportRefusedBeforeHandshake: a connection from an address at
// its limit is refused before its TLS handshake (QUIC CONNECTION_REFUSED,
// not an HTTP answer), and counted.
func TestWebTransportRefusedBeforeHandshake(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, _ := start(t, Config{MaxPerAddress: 1})
	url, tr := startWT(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	openWT(ctx, t, tr, url)
	waitConns(t, s, 1)
	// A second client: its own QUIC connection from 127.0.0.1.
	_, tr2 := startWT(t, s)
	tr2.TLSClientConfig = tr.TLSClientConfig
	_, _, err := tr2.Dial(ctx, url, nil)
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("a second session from 127.0.0.1: %v, want CONNECTION_REFUSED", err)
	}
	// Counted per Initial packet, not as an HTTP request refused.
	if st := s.Stats(); st.RefusedInitials == 0 || st.Refused != 0 || st.Accepted != 1 {
		t.Errorf("stats %+v, want Initials refused and no request", st)
	}
}

// initial is a QUIC v1 Initial packet as a flood sends it (RFC 9000
// §17.2.2): a valid long header with random connection IDs, no token, a
// protected payload of random bytes no key opens, padded to the 1,200
// bytes a server requires.
func initial() []byte {
	b := []byte{0xc3, 0, 0, 0, 1, 8}
	b = append(b, rand.Text()[:8]...) // destination connection ID
	b = append(b, 8)
	b = append(b, rand.Text()[:8]...) // source connection ID
	b = append(b, 0)                  // no token
	rest := 1200 - len(b) - 2
	b = append(b, byte(0x40|rest>>8), byte(rest))
	return append(b, make([]byte, rest)...)
}

// TestWebTransportInitialFlood: Initial packets from many addresses that
// never answer (spoofed, in a real attack) cost the edge a stateless Retry
// each past RetryAbove a second, not a connection each; a genuine browser
// still connects. Against an edge without the Retry (RetryAbove beyond
// the flood), the same flood gets a connection per packet.
func TestWebTransportInitialFlood(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	const (
		packets = 3000
		sources = 50 // 127.0.0.2 …: loopback answers to all of 127/8
		perSec  = 20_000
	)
	// flood sends the packets, then connects a genuine browser, whose
	// Initial the edge reads after all of the flood's that reached it.
	flood := func(t *testing.T, retryAbove int) (st Stats, goroutines int, took time.Duration) {
		s, _ := start(t, Config{RetryAbove: retryAbove})
		url, tr := startWT(t, s)
		dst, err := net.ResolveUDPAddr("udp", strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/"))
		if err != nil {
			t.Fatal(err)
		}
		var from []*net.UDPConn
		for i := range sources {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))})
			if err != nil {
				t.Skipf("no source address 127.0.0.%d on loopback: %v", 2+i, err)
			}
			defer c.Close()
			from = append(from, c)
		}
		before, start := runtime.NumGoroutine(), time.Now()
		tick := time.NewTicker(time.Second / (perSec / 100))
		defer tick.Stop()
		for i := range packets {
			if i%100 == 0 {
				<-tick.C // at most perSec
			}
			from[i%sources].WriteToUDP(initial(), dst)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, sess, err := tr.Dial(ctx, url, nil)
		if err != nil {
			t.Fatalf("a genuine browser after the flood: %v", err)
		}
		sess.CloseWithError(0, "")
		return s.Stats(), runtime.NumGoroutine() - before, time.Since(start)
	}
	// One handshake a second without a Retry: the flood's first packet,
	// then one a second (and the genuine browser, Retried or not).
	st, g, took := flood(t, 1)
	if most := 2 + uint64(took.Seconds()+1); st.Retries == 0 || st.Handshakes > most {
		t.Errorf("with Retry: %d Retries, %d handshakes in %v; want Retries and at most %d handshakes", st.Retries, st.Handshakes, took, most)
	}
	stNo, gNo, _ := flood(t, 1_000_000)
	if stNo.Retries != 0 || stNo.Handshakes < 10*max(st.Handshakes, 1) {
		t.Errorf("without Retry: %d Retries, %d handshakes; want none and a handshake a packet that arrived (≥ %d)", stNo.Retries, stNo.Handshakes, 10*max(st.Handshakes, 1))
	}
	fmt.Printf("RESULT webtransport-initial-flood packets=%d sources=%d rate≤%d/s with-retry: retries=%d handshakes=%d goroutines+%d without: handshakes=%d goroutines+%d\n",
		packets, sources, perSec, st.Retries, st.Handshakes, g, stNo.Handshakes, gNo)
}

// TestWebTransportConnectionsPerAddress: one address holds at most as many
// QUIC connections as it may hold sessions and a few more on their way to
// one, whether or not they open a session; one over is refused before its
// handshake, and a connection that ends gives its place back.
func TestWebTransportConnectionsPerAddress(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, _ := start(t, Config{MaxPerAddress: 2})
	url, tr := startWT(t, s)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/")
	tlsConf := tr.TLSClientConfig.Clone()
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// One session, and connections that never open one: HTTP/3 after the
	// handshake, no request.
	openWT(ctx, t, tr, url)
	var held []*quic.Conn
	for range 1 + pendingSlack { // with the session's, 2 + pendingSlack
		c, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{EnableDatagrams: true})
		if err != nil {
			t.Fatalf("connection %d: %v", len(held)+2, err)
		}
		defer c.CloseWithError(0, "")
		held = append(held, c)
	}
	_, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{EnableDatagrams: true})
	var te *quic.TransportError
	if !errors.As(err, &te) || te.ErrorCode != quic.ConnectionRefused {
		t.Fatalf("one connection over: %v, want CONNECTION_REFUSED", err)
	}
	held[0].CloseWithError(0, "")
	wait.For(t, 10*time.Second, "the closed connection's place", func() bool {
		c, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{EnableDatagrams: true})
		if err == nil {
			defer c.CloseWithError(0, "")
		}
		return err == nil
	})
	if st := s.Stats(); st.RefusedInitials == 0 || st.Handshakes < 3+pendingSlack {
		t.Errorf("stats %+v", st)
	}
}
