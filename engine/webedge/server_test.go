package webedge

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/syncbuf"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// clockAt is a clock whose earliest time is fixed.
type clockAt int64

func (c clockAt) Now() (ptp.Reading, error) {
	return ptp.Reading{Earliest: int64(c), Latest: int64(c), State: ptp.StateSynchronized}, nil
}

// clockDown is a clock that cannot be read.
type clockDown struct{}

func (clockDown) Now() (ptp.Reading, error) { return ptp.Reading{}, errors.New("clock down") }

// history is a fixed edge.History.
type history struct {
	released  []*edge.Released
	announced [][]byte
}

func (h history) Released(uint32) []*edge.Released { return h.released }
func (h history) Announced(uint32) [][]byte        { return h.announced }

func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Streams == nil {
		cfg.Streams = []uint32{1}
	}
	if cfg.Clock == nil {
		cfg.Clock = clockAt(0)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { s.CloseAll(); hs.Close() })
	return s, "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func read(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.MessageBinary {
		t.Fatalf("message type %v, want binary", typ)
	}
	return b
}

// waitConns waits until the server holds n connections.
func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	for s.Stats().Conns != n {
		select {
		case <-t.Context().Done():
			t.Fatalf("%d connections, want %d", s.Stats().Conns, n)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestFanOut(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, url := start(t, Config{})
	a, b := dial(t, url), dial(t, url)
	waitConns(t, s, 2)
	dgs := [][]byte{[]byte("one"), []byte("two")}
	if n, err := s.Send(wire.TypeRelease, dgs); n != 2 || err != nil {
		t.Fatalf("Send = %d, %v", n, err)
	}
	// The edge re-stamps its RELEASE buffers between copies: what was
	// queued must not change with them.
	dgs[0][0] = 'X'
	for _, c := range []*websocket.Conn{a, b} {
		for _, want := range []string{"one", "two"} {
			if got := read(t, c); string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	}
}

// TestReleaseOnce: a browser is sent each live RELEASE once, whatever
// the edge's copies; streams released together each once; a datagram
// that is not the edge's RELEASE is never taken for a copy.
func TestReleaseOnce(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, url := start(t, Config{})
	a, b := dial(t, url), dial(t, url)
	waitConns(t, s, 2)
	r1, r2 := release(t, 7), release(t, 7)
	binary.BigEndian.PutUint32(r2[8:], 2) // stream 2, same period
	for range 7 {
		s.Send(wire.TypeRelease, [][]byte{r1, r2, []byte("not a RELEASE")})
	}
	s.Send(wire.TypeAnnounce, [][]byte{[]byte("next")})
	for _, c := range []*websocket.Conn{a, b} {
		want := []string{string(r1), string(r2)}
		for range 7 {
			want = append(want, "not a RELEASE")
		}
		want = append(want, "next")
		for i, w := range want {
			if got := read(t, c); string(got) != w {
				t.Fatalf("message %d: %q, want %q", i, got, w)
			}
		}
	}
	if st := s.Stats(); st.CopiesSkipped != 2*2*6 {
		t.Errorf("CopiesSkipped = %d, want %d (2 browsers × 2 streams × 6 further copies)", st.CopiesSkipped, 2*2*6)
	}
}

func TestCatchUp(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	h := history{
		released: []*edge.Released{
			{Bundle: &bundle.Bundle{Period: 1, ReleaseAt: 100, Shards: [][]byte{[]byte("s1")}}, CatchUp: []byte("c1")},
			{Bundle: &bundle.Bundle{Period: 2, ReleaseAt: 300, Shards: [][]byte{[]byte("s2")}}, CatchUp: []byte("c2")},
		},
		announced: [][]byte{[]byte("a3")},
	}
	// At 200 period 2's releaseAt (300) has not passed: its RELEASE
	// must not be sent, however the history came to hold it.
	s, url := start(t, Config{Clock: clockAt(200)})
	s.SetHistory(h)
	c := dial(t, url)
	for _, want := range []string{"s1", "c1", "a3"} {
		if got := read(t, c); string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if got := s.Stats().CatchUp; got != 3 {
		t.Errorf("CatchUp = %d, want 3", got)
	}
}

func TestBrowserThatSendsIsClosed(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, url := start(t, Config{})
	c := dial(t, url)
	if err := c.Write(t.Context(), websocket.MessageBinary, bytes.Repeat([]byte{1}, 4096)); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Read(t.Context())
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation && got != websocket.StatusMessageTooBig {
		t.Fatalf("read after sending: %v, want a policy-violation close", err)
	}
	waitConns(t, s, 0)
	if st := s.Stats(); st.BadInput != 1 {
		t.Errorf("BadInput = %d, want 1", st.BadInput)
	}
}

// A browser that never reads is closed once its queue is full, and Send
// keeps returning at once for the others.
func TestBrowserThatNeverReadsIsClosed(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, url := start(t, Config{Queue: 4})
	dial(t, url) // never read
	good := dial(t, url)
	good.SetReadLimit(1 << 20)
	waitConns(t, s, 2)
	big := bytes.Repeat([]byte{7}, 64<<10)
	for i := 0; s.Stats().Slow == 0; i++ {
		if i == 10000 {
			t.Fatal("a browser that never reads was never closed")
		}
		if n, err := s.Send(wire.TypeAnnounce, [][]byte{big}); n != 1 || err != nil {
			t.Fatalf("Send = %d, %v", n, err)
		}
		// The reading browser keeps up; its queue never fills.
		if got := read(t, good); len(got) != len(big) {
			t.Fatalf("read %d bytes, want %d", len(got), len(big))
		}
	}
	waitConns(t, s, 1)
	if st := s.Stats(); st.Dropped == 0 {
		t.Errorf("Dropped = 0 with a browser closed for a full queue")
	}
}

func TestAdmitAndMaxConns(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, url := start(t, Config{MaxConns: 1, Admit: func(r *http.Request) error {
		if r.URL.Query().Get("token") != "good" {
			return errors.New("no subscription token")
		}
		return nil
	}})
	ctx := t.Context()
	_, resp, err := websocket.Dial(ctx, url+"/?token=bad", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("without a token: %v, want 403", err)
	}
	dial(t, url+"/?token=good")
	waitConns(t, s, 1)
	_, resp, err = websocket.Dial(ctx, url+"/?token=good", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over MaxConns: %v, want 503", err)
	}
	if st := s.Stats(); st.Refused != 2 || st.Accepted != 1 {
		t.Errorf("Refused, Accepted = %d, %d, want 2, 1", st.Refused, st.Accepted)
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Clock: clockAt(0)},
		{Streams: []uint32{1}},
		{Streams: []uint32{1}, Clock: clockAt(0), CatchUp: wire.MaxCatchUp + 1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

// timeRequest is a browser's time request sent at origin.
func timeRequest(origin int64) []byte {
	b := make([]byte, wire.TimeRequestLen)
	(&wire.TimeRequest{Origin: origin}).Encode(b)
	return b
}

// A browser's time request is answered with the edge's time, beside the
// fan-out; one that asks far more often than a page does is closed as bad
// input.
func TestTimeEcho(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	const at = 1_800_000_000_000_000_000
	s, url := start(t, Config{Clock: clockAt(at)})
	c := dial(t, url)
	if err := c.Write(t.Context(), websocket.MessageBinary, timeRequest(-42)); err != nil {
		t.Fatal(err)
	}
	var e wire.TimeEcho
	if err := e.Decode(read(t, c)); err != nil || e != (wire.TimeEcho{Origin: -42, Received: at, Sent: at}) {
		t.Fatalf("echo %+v, %v; want the request's origin and the edge's time", e, err)
	}
	// The echo is counted once written, which may be just after the
	// browser has read it.
	wait.For(t, 10*time.Second, "the echo to be counted", func() bool { return s.Stats().TimeEchoes == 1 })
	if st := s.Stats(); st.BadInput != 0 {
		t.Fatalf("BadInput %d after one time request; want 0", st.BadInput)
	}
	// 8 at once are allowed, then one a second: 40 in a row are not.
	for i := range 40 {
		if err := c.Write(t.Context(), websocket.MessageBinary, timeRequest(int64(i))); err != nil {
			break // closed
		}
	}
	waitConns(t, s, 0)
	if st := s.Stats(); st.BadInput != 1 || st.TimeEchoes > 1+maxTimeRequests+20 {
		t.Errorf("BadInput %d, TimeEchoes %d", st.BadInput, st.TimeEchoes)
	}
}

// TestTimeEchoClockDown: while the edge cannot read its clock, a time
// request goes unanswered and is counted, and the browser stays
// connected: the clock is the edge's condition, not the page's fault.
func TestTimeEchoClockDown(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, url := start(t, Config{Clock: clockDown{}})
	c := dial(t, url)
	for i := range 3 {
		if err := c.Write(t.Context(), websocket.MessageBinary, timeRequest(int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 10*time.Second, "3 unanswered time requests", func() bool { return s.Stats().TimeUnanswered == 3 })
	if st := s.Stats(); st.Conns != 1 || st.BadInput != 0 || st.TimeEchoes != 0 {
		t.Fatalf("conns %d, BadInput %d, TimeEchoes %d; want 1, 0, 0", st.Conns, st.BadInput, st.TimeEchoes)
	}
}

// shard is an ANNOUNCE datagram of period p whose payload is body, as far
// as the endpoint looks (its header).
func shard(t *testing.T, p uint64, body string) []byte {
	t.Helper()
	b := append(slices.Clone(release(t, p)[:wire.HeaderLen]), body...)
	b[5] = byte(wire.TypeAnnounce)
	binary.BigEndian.PutUint16(b[20:], uint16(len(body)))
	if h, err := wire.Peek(b); err != nil || h.Type != wire.TypeAnnounce || h.Period != p {
		t.Fatalf("test shard: %+v %v", h, err)
	}
	return b
}

// TestAnnounceOnce: the carousel's later rounds repeat a period's shards
// for UDP's losses; a browser's session, reliable and in order, is sent
// each once — also one caught up on them when it joined — and a shard
// that differs is sent whatever its period. Once the period's RELEASE is
// queued the session forgets its shards (the memory is bounded).
func TestAnnounceOnce(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s7 := shard(t, 7, "period 7")
	s, url := start(t, Config{})
	s.SetHistory(history{announced: [][]byte{s7}})
	a := dial(t, url)
	waitConns(t, s, 1)
	s5a, s5b, s6 := shard(t, 5, "5a"), shard(t, 5, "5b"), shard(t, 6, "6")
	s.Send(wire.TypeAnnounce, [][]byte{s5a, s5b})
	s.Send(wire.TypeAnnounce, [][]byte{s5a, s5b, s6})
	s.Send(wire.TypeAnnounce, [][]byte{s5a, s5b, s6})
	rel5 := release(t, 5)
	s.Send(wire.TypeRelease, [][]byte{rel5})
	s.Send(wire.TypeAnnounce, [][]byte{s5a})
	b := dial(t, url) // caught up on s7
	waitConns(t, s, 2)
	s.Send(wire.TypeAnnounce, [][]byte{s7, []byte("end")})
	for _, w := range [][]byte{s7, s5a, s5b, s6, rel5, s5a, []byte("end")} {
		if got := read(t, a); !bytes.Equal(got, w) {
			t.Fatalf("first browser: %q, want %q", got, w)
		}
	}
	for _, w := range [][]byte{s7, []byte("end")} {
		if got := read(t, b); !bytes.Equal(got, w) {
			t.Fatalf("browser caught up: %q, want %q", got, w)
		}
	}
	// Rounds 2 and 3 of period 5's two shards and round 3 of period 6's;
	// s7 to both browsers (a had it at catch-up too).
	if st := s.Stats(); st.AnnounceRepeats != 2+3+2 {
		t.Errorf("AnnounceRepeats = %d, want 7", st.AnnounceRepeats)
	}
}

// TestSessionsPerAddress: one address may hold MaxPerAddress sessions;
// one more is refused with 429 and counted, and a session that ends makes
// room for another.
func TestSessionsPerAddress(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	var logs syncbuf.Buffer
	s, url := start(t, Config{MaxPerAddress: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	a := dial(t, url)
	dial(t, url)
	waitConns(t, s, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third session from 127.0.0.1: %v (%v), want 429", err, resp)
	}
	if !resp.Close {
		t.Error("the refused request's connection was kept alive")
	}
	if st := s.Stats(); st.RefusedAddress != 1 || st.Refused != 1 {
		t.Errorf("stats %+v, want 1 refused for its address", st)
	}
	if !strings.Contains(logs.String(), "session refused: 2 sessions from 127.0.0.1 already") {
		t.Errorf("no line saying why:\n%s", logs.String())
	}
	a.Close(websocket.StatusNormalClosure, "")
	waitConns(t, s, 1)
	dial(t, url)
	waitConns(t, s, 2)
}

// TestSessionsPerPrefix: IPv6 addresses count against their prefix as
// well as themselves; IPv4 ones against their address alone.
func TestSessionsPerPrefix(t *testing.T) {
	s, err := New(Config{Streams: []uint32{1}, Clock: clockAt(0), MaxPerAddress: 2, MaxPerPrefix: 3, PrefixBits: 56})
	if err != nil {
		t.Fatal(err)
	}
	add := func(addr string) string {
		a := netip.MustParseAddr(addr)
		if why := s.crowded(a); why != "" {
			return why
		}
		s.site(client{addr: a}, 1)
		return ""
	}
	for _, a := range []string{"2001:db8:0:1::1", "2001:db8:0:1::1", "2001:db8:0:2::2"} {
		if why := add(a); why != "" {
			t.Fatalf("%s: %s", a, why)
		}
	}
	if why := add("2001:db8:0:1::1"); !strings.Contains(why, "for one address") {
		t.Errorf("a third from one address: %q", why)
	}
	if why := add("2001:db8:0:ff::3"); !strings.Contains(why, "2001:db8::/56") {
		t.Errorf("a fourth in one /56: %q", why)
	}
	if why := add("2001:db8:0:100::1"); why != "" {
		t.Errorf("another /56: %q", why)
	}
	for range 2 {
		if why := add("192.0.2.1"); why != "" {
			t.Errorf("IPv4: %q", why)
		}
	}
	if why := add("192.0.2.1"); why == "" {
		t.Error("a third from one IPv4 address was admitted")
	}
	s.site(client{addr: netip.MustParseAddr("2001:db8:0:2::2")}, -1)
	if why := add("2001:db8:0:ff::3"); why != "" {
		t.Errorf("after one in the /56 ended: %q", why)
	}
	if _, err := New(Config{Streams: []uint32{1}, Clock: clockAt(0), PrefixBits: 129}); !errors.Is(err, ErrConfig) {
		t.Errorf("a 129-bit prefix: %v", err)
	}
}

// TestBounded: a line for the first event, then at most one a minute,
// with the events since the last.
func TestBounded(t *testing.T) {
	var b bounded
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		after time.Duration
		n     int
		log   bool
	}{{0, 1, true}, {time.Second, 0, false}, {59 * time.Second, 0, false}, {61 * time.Second, 3, true}, {62 * time.Second, 0, false}} {
		if n, log := b.note(t0.Add(c.after)); n != c.n || log != c.log {
			t.Errorf("at %v: %d, %v; want %d, %v", c.after, n, log, c.n, c.log)
		}
	}
}

// TestListener: one address holds at most MaxPerAddress TCP connections
// and a few more on their way to a session; one over is closed as it is
// accepted, and counted; one that closes makes room.
func TestListener(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	s, err := New(Config{Streams: []uint32{1}, Clock: clockAt(0), MaxPerAddress: 2})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Listener = s.Listener(hs.Listener)
	hs.Start()
	defer hs.Close()
	const most = 2 + pendingSlack
	connections := func(n int) {
		t.Helper()
		wait.For(t, 10*time.Second, fmt.Sprintf("%d connections held", n), func() bool { return s.Stats().Connections == n })
	}
	var held []net.Conn
	for range most {
		c, err := net.Dial("tcp", hs.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	connections(most)
	over, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the connection over the limit: %v, want it closed", err)
	}
	if st := s.Stats(); st.RefusedConnections != 1 || st.Connections != most {
		t.Errorf("stats %+v, want 1 refused and %d held", st, most)
	}
	held[0].Close()
	connections(most - 1)
	again, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	connections(most)
	// A session over a held connection gives its place back when it ends.
	for _, c := range held[1:] {
		c.Close()
	}
	connections(1)
	ws := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http"))
	waitConns(t, s, 1)
	connections(2)
	ws.Close(websocket.StatusNormalClosure, "")
	connections(1)
}

// TestCatchUpForgetsReleased: a joining session remembers the ANNOUNCE
// shards of the periods still to come, not those of the released periods
// its catch-up carries (their rounds are over).
func TestCatchUpForgetsReleased(t *testing.T) {
	h := history{
		released:  []*edge.Released{{Bundle: &bundle.Bundle{Stream: 1, Period: 1, ReleaseAt: 100, Shards: [][]byte{shard(t, 1, "1")}}, CatchUp: release(t, 1)}},
		announced: [][]byte{shard(t, 3, "3")},
	}
	s, err := New(Config{Streams: []uint32{1}, Clock: clockAt(200)})
	if err != nil {
		t.Fatal(err)
	}
	s.SetHistory(h)
	c := &conn{queue: make(chan []byte, 8)}
	s.sendCatchUp(c)
	if len(c.queue) != 3 {
		t.Fatalf("catch-up queued %d datagrams, want 3", len(c.queue))
	}
	if _, ok := c.announced[releaseKey{1, 1}]; ok || len(c.announced) != 1 || c.announced[releaseKey{1, 3}] == nil {
		t.Errorf("remembered %v, want period 3's shard alone", c.announced)
	}
}
