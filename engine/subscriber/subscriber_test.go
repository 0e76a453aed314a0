package subscriber_test

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/subscriber/subscribertest"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/wire"
)

// The Client's timers — handshake retries, keepalives, the silence
// watchdog — run in virtual time here: the client talks over an in-memory
// Conn to an edge played by real Sessions, and every instant is exact.

var _ subscriber.Conn = (*subscribertest.Conn)(nil)

var (
	edgeAddr   = netip.MustParseAddrPort("192.0.2.1:7272")
	clientAddr = netip.MustParseAddrPort("198.51.100.7:40000")
)

// written is one datagram the client wrote: its type and when, after the
// test's start.
type written struct {
	at  time.Duration
	typ wire.Type
}

// fakeEdge answers the client's datagrams with real Sessions, unless
// silent, and logs them.
type fakeEdge struct {
	conn     *subscribertest.Conn
	from     atomic.Pointer[netip.AddrPort] // the client's address as the edge sees it
	sessions atomic.Pointer[unicast.Sessions]
	silent   atomic.Bool
	log      []written // read only after synctest.Wait
	sent     [][]byte  // what the client wrote, likewise
	nonces   map[[wire.NonceLen]byte]int
}

func newSessionTable(t *testing.T) *unicast.Sessions {
	s, err := unicast.NewSessions(unicast.SessionConfig{Streams: []uint32{1}, Keepalive: time.Second, Expiry: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startClient starts a client over an in-memory conn to a fake edge
// (silent from the start if silent), and a reader that drives its session
// handling, all in the bubble and all ended by cleanup.
func startClient(t *testing.T, silent bool) (*subscriber.Client, *fakeEdge) {
	return startClientWith(t, silent, newSessionTable(t), nil)
}

// startClientWith is startClient with the edge's table and the client's
// token source given.
func startClientWith(t *testing.T, silent bool, table *unicast.Sessions, token func() []byte) (*subscriber.Client, *fakeEdge) {
	t0 := time.Now()
	e := &fakeEdge{conn: subscribertest.New(edgeAddr), nonces: map[[wire.NonceLen]byte]int{}}
	e.sessions.Store(table)
	e.silent.Store(silent)
	from := clientAddr
	e.from.Store(&from)
	edgeDone := make(chan struct{})
	go func() {
		defer close(edgeDone)
		out := make([]byte, wire.MaxDatagram)
		for {
			select {
			case <-e.conn.Closed():
				return
			case d := <-e.conn.Written():
				h, err := wire.Peek(d)
				if err != nil {
					t.Errorf("client wrote %x: %v", d, err)
					continue
				}
				e.log = append(e.log, written{time.Since(t0), h.Type})
				e.sent = append(e.sent, d)
				if h.Type == wire.TypeHello {
					var m wire.Hello
					if m.Decode(d) == nil {
						e.nonces[m.Nonce]++
					}
				}
				if e.silent.Load() {
					continue
				}
				if a := e.sessions.Load().Handle(d, *e.from.Load(), time.Now(), out); a.Reply != nil {
					e.conn.Deliver(a.Reply)
				}
			}
		}
	}()
	c, err := subscriber.New(subscriber.Config{Edge: edgeAddr, Streams: []uint32{1}, MaxRetry: time.Second, Token: token}, e.conn)
	if err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		ms := make([]datagram.Message, 4)
		for i := range ms {
			ms[i].Buf = make([]byte, wire.MaxDatagram)
		}
		for {
			if _, err := c.ReadBatch(ms); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-readerDone
		<-edgeDone
	})
	return c, e
}

// checkBackoff checks that log, from its first entry on, is HELLOs of one
// nonce whose gaps are drawn from the upper half of Retry doubling up to
// MaxRetry (200 ms … 1 s here).
func checkBackoff(t *testing.T, log []written) {
	t.Helper()
	b := 200 * time.Millisecond
	for i := 1; i < len(log); i++ {
		gap := log[i].at - log[i-1].at
		if log[i].typ != wire.TypeHello || gap < b/2 || gap > b {
			t.Errorf("write %d: %v after %v, want a HELLO after %v … %v", i, log[i].typ, gap, b/2, b)
		}
		b = min(2*b, time.Second)
	}
}

// TestClientRetryBackoff: to a silent edge the client repeats its HELLO,
// the same nonce each time, after waits drawn from the upper half of
// Retry, doubling up to MaxRetry, so refused receivers do not return in
// step.
func TestClientRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e := startClient(t, true)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if len(e.log) < 6 || e.log[0] != (written{0, wire.TypeHello}) || len(e.nonces) != 1 {
			t.Fatalf("wrote %v with %d nonces, want HELLOs from 0 s with one nonce", e.log, len(e.nonces))
		}
		checkBackoff(t, e.log)
	})
}

// TestClientSession: the client subscribes at once, keeps alive every
// interval the edge advertised, starts over at once when a restarted edge
// refuses its keepalive, and when the edge falls silent for longer than
// the expiry starts over with a fresh handshake, retrying until the edge
// answers again.
func TestClientSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, e := startClient(t, false)
		t0 := time.Now()
		at := func(d time.Duration) { time.Sleep(time.Until(t0.Add(d))); synctest.Wait() }
		check := func(when string, subscribed bool, want subscriber.Stats) {
			t.Helper()
			if got := c.Stats(); c.Subscribed() != subscribed || got != want {
				t.Errorf("%s: subscribed %v, stats %+v; want %v, %+v", when, c.Subscribed(), got, subscribed, want)
			}
		}
		at(0)
		check("at start", true, subscriber.Stats{Subscriptions: 1})
		at(3500 * time.Millisecond)
		e.sessions.Store(newSessionTable(t)) // the edge restarts: the session is unknown
		at(4500 * time.Millisecond)
		check("after the edge restarted", true, subscriber.Stats{Subscriptions: 2, Restarts: 1, Refused: 1})
		at(5500 * time.Millisecond)
		e.silent.Store(true)
		at(9500 * time.Millisecond)
		check("silent edge", false, subscriber.Stats{Subscriptions: 2, Restarts: 2, Refused: 1})
		e.silent.Store(false)
		at(11 * time.Second)
		check("edge back", true, subscriber.Stats{Subscriptions: 3, Restarts: 2, Refused: 1})

		const (
			H = wire.TypeHello
			S = wire.TypeSubscribe
			K = wire.TypeKeepalive
		)
		s := time.Second
		want := []written{
			{0, H}, {0, S}, {1 * s, K}, {2 * s, K}, {3 * s, K},
			{4 * s, K}, {4 * s, H}, {4 * s, S}, // refused: a new session at once
			{5 * s, K}, {6 * s, K}, {7 * s, K}, {8 * s, K}, // unanswered from 6 s
			{8*s + time.Millisecond, H}, // heard last at 5 s: 3 s expiry passed
		}
		n := len(want)
		if len(e.log) < n+1 || !slices.Equal(e.log[:n], want) {
			t.Fatalf("wrote\n%v\nwant it to start\n%v", e.log, want)
		}
		// Then HELLOs backing off until the edge answers after 9.5 s.
		last := n + slices.IndexFunc(e.log[n:], func(w written) bool { return w.typ == S })
		if last < n || e.log[last-1].typ != H || e.log[last].at != e.log[last-1].at || e.log[last].at < 9500*time.Millisecond {
			t.Errorf("after the silence wrote %v, want HELLOs until a HELLO and SUBSCRIBE after 9.5 s", e.log[n-1:])
		}
		checkBackoff(t, e.log[n-1:last])
	})
}
