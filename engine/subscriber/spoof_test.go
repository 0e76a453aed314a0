package subscriber_test

import (
	"crypto/ed25519"
	"math"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// A blind attacker cannot see the client's traffic: it sends session
// messages from the edge's address with guessed fields. These tests run
// the issue-14 attacks against the client in virtual time.

func encode(t *testing.T, m interface{ Encode([]byte) (int, error) }) []byte {
	t.Helper()
	b := make([]byte, wire.MaxDatagram)
	n, err := m.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// blind is what a blind attacker sends from the edge's address: refusals
// with nonce 0 and with a guessed nonce, each with the longest retry-after,
// and answers to no request.
func blind(t *testing.T) [][]byte {
	var out [][]byte
	for _, reason := range []wire.Reason{wire.ReasonEdgeFull, wire.ReasonUnknownSession, wire.ReasonShuttingDown, wire.ReasonBadCookie} {
		for _, nonce := range [][wire.NonceLen]byte{{}, {1, 2, 3, 4, 5, 6, 7, 8}} {
			out = append(out, encode(t, &wire.Refused{Nonce: nonce, Reason: reason, RetryAfterMs: math.MaxUint32}))
		}
	}
	out = append(out,
		encode(t, &wire.Cookie{Cookie: [wire.CookieLen]byte{9}}),
		encode(t, &wire.Subscribed{SessionID: [8]byte{1}, KeepaliveMs: 1, ExpiryMs: 1, Streams: []uint32{1}}),
		encode(t, &wire.Keepalive{Echo: true, Seq: 1}),
	)
	return out
}

// onlyNonce is the one HELLO nonce the edge has seen; call it when the
// bubble is idle (after synctest.Wait), before waking the client.
func onlyNonce(t *testing.T, e *fakeEdge) [wire.NonceLen]byte {
	t.Helper()
	if len(e.nonces) != 1 {
		t.Fatalf("%d HELLO nonces seen, want 1", len(e.nonces))
	}
	for n := range e.nonces {
		return n
	}
	return [wire.NonceLen]byte{}
}

// TestClientIgnoresBlindSpoofing: a blind spoofed REFUSED (nonce 0,
// retry-after 2³²−1 ms) and other unsolicited answers change nothing in
// any phase: the subscribed client keeps its session and its keepalive
// schedule; a client still shaking hands keeps its schedule.
func TestClientIgnoresBlindSpoofing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, e := startClient(t, false)
		t0 := time.Now()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		spoofed := blind(t)
		for _, d := range spoofed {
			e.conn.Deliver(d)
		}
		time.Sleep(time.Until(t0.Add(10500 * time.Millisecond)))
		synctest.Wait()
		want := subscriber.Stats{Subscriptions: 1, Ignored: uint64(len(spoofed))}
		if got := c.Stats(); got != want || !c.Subscribed() {
			t.Errorf("stats %+v, subscribed %v; want %+v, subscribed", got, c.Subscribed(), want)
		}
		var keepalives int
		for _, w := range e.log {
			if w.typ == wire.TypeKeepalive {
				keepalives++
			}
		}
		if keepalives != 10 || len(e.log) != 12 {
			t.Errorf("wrote %v; want HELLO, SUBSCRIBE and a keepalive every second", e.log)
		}
	})
	for _, phase := range []string{"hello", "subscribe"} {
		t.Run(phase, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, e := startClient(t, true)
				synctest.Wait()
				if phase == "subscribe" {
					e.conn.Deliver(encode(t, &wire.Cookie{Nonce: onlyNonce(t, e)}))
					synctest.Wait()
				}
				spoofed := blind(t)
				for _, d := range spoofed {
					e.conn.Deliver(d)
				}
				time.Sleep(5 * time.Second)
				synctest.Wait()
				if got := c.Stats(); got.Refused != 0 || got.Restarts != 0 || got.Ignored != uint64(len(spoofed)) {
					t.Errorf("stats %+v: want no refusal, no restart, %d ignored", got, len(spoofed))
				}
				// Still retrying at MaxRetry (1 s): nothing was postponed.
				if n := len(e.log); n < 6 || e.log[n-1].at < 4*time.Second {
					t.Errorf("wrote %v: want retries continuing to 5 s", e.log)
				}
			})
		})
	}
}

// TestClientCapsRetryAfter: a genuine refusal (its nonce echoed) that
// advises waiting 2³²−1 ms delays the next attempt by MaxRetryAfter.
func TestClientCapsRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, e := startClient(t, true)
		synctest.Wait()
		e.conn.Deliver(encode(t, &wire.Refused{Nonce: onlyNonce(t, e), Reason: wire.ReasonEdgeFull, RetryAfterMs: math.MaxUint32}))
		time.Sleep(subscriber.MaxRetryAfter + time.Second)
		synctest.Wait()
		if got := c.Stats(); got.Refused != 1 || len(e.log) < 2 || e.log[1] != (written{subscriber.MaxRetryAfter, wire.TypeHello}) {
			t.Errorf("stats %+v, wrote %v: want one refusal and the next HELLO at %v", got, e.log, subscriber.MaxRetryAfter)
		}
	})
}

// TestClientWatchdogInHandshake: an edge that gave a cookie and then
// never answers the SUBSCRIBE does not hold the client forever: after the
// handshake timeout it starts over with a fresh nonce.
func TestClientWatchdogInHandshake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, e := startClient(t, true)
		synctest.Wait()
		e.conn.Deliver(encode(t, &wire.Cookie{Nonce: onlyNonce(t, e)}))
		time.Sleep(subscriber.DefaultHandshakeTimeout + 500*time.Millisecond)
		synctest.Wait()
		var hellos []time.Duration
		for _, w := range e.log {
			if w.typ == wire.TypeHello {
				hellos = append(hellos, w.at)
			}
		}
		want := []time.Duration{0, subscriber.DefaultHandshakeTimeout + time.Millisecond}
		if got := c.Stats(); got.Restarts != 1 || len(e.nonces) != 2 || len(hellos) < 2 || !slices.Equal(hellos[:2], want) {
			t.Errorf("stats %+v, %d nonces, HELLOs at %v; want a restart with a new nonce, HELLOs from %v", got, len(e.nonces), hellos, want)
		}
	})
}

// TestClientMovesByChallenge: when the client's address changes (a NAT
// rebinding), its next keepalive reaches the edge from the new address;
// the edge challenges it there, the client answers, and the subscription
// moves without a new handshake and without ever being dropped.
func TestClientMovesByChallenge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, e := startClient(t, false)
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		moved := netip.AddrPortFrom(clientAddr.Addr(), 40001)
		e.from.Store(&moved)
		time.Sleep(time.Second)
		synctest.Wait()
		s := e.sessions.Load()
		dst, _ := s.Destinations(nil, 1)
		st := s.Stats()
		if !slices.Equal(dst, []netip.AddrPort{moved}) || st.Moved != 1 || st.Challenges != 1 {
			t.Errorf("edge sends to %v (moved %d, challenges %d); want %v, 1, 1", dst, st.Moved, st.Challenges, moved)
		}
		if got := c.Stats(); got != (subscriber.Stats{Subscriptions: 1, Challenges: 1}) || !c.Subscribed() {
			t.Errorf("client stats %+v, subscribed %v; want one subscription and one challenge answered", got, c.Subscribed())
		}
		// Keepalives go on from the new address and are echoed.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := c.Stats(); got.Restarts != 0 || !c.Subscribed() {
			t.Errorf("after the move: stats %+v, subscribed %v", got, c.Subscribed())
		}
	})
}

// TestClientPresentsToken: to an edge that requires subscription tokens,
// a client with a token from the origin subscribes; one without is
// refused (reason 7) and keeps retrying, subscribing nothing.
func TestClientPresentsToken(t *testing.T) {
	origin := ed25519.NewKeyFromSeed(make([]byte, 32))
	table := func(t *testing.T) *unicast.Sessions {
		s, err := unicast.NewSessions(unicast.SessionConfig{Streams: []uint32{1}, Keepalive: time.Second, Expiry: 3 * time.Second,
			Tokens: seal.NewKeyRing(origin.Public().(ed25519.PublicKey))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	synctest.Test(t, func(t *testing.T) {
		tok := seal.SignToken(origin, &wire.Token{NotAfter: ptp.DefaultTAIOffset.FromTime(time.Now()) + int64(10*time.Minute)})
		c, _ := startClientWith(t, false, table(t), func() []byte { return tok })
		synctest.Wait()
		if !c.Subscribed() {
			t.Errorf("with a token: not subscribed, stats %+v", c.Stats())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		c, e := startClientWith(t, false, table(t), nil)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if c.Subscribed() || c.Stats().Refused == 0 || e.sessions.Load().Stats().Refused[wire.ReasonToken] == 0 {
			t.Errorf("without a token: subscribed %v, stats %+v", c.Subscribed(), c.Stats())
		}
		// Refusals in a row back off (100 ms … 1 s here): no tight loop.
		var subscribes int
		for _, w := range e.log {
			if w.typ == wire.TypeSubscribe {
				subscribes++
			}
		}
		if subscribes < 3 || subscribes > 10 {
			t.Errorf("%d SUBSCRIBEs refused in 3 s, want a back-off's 3 … 10", subscribes)
		}
	})
}

// TestClientResponseGap: CHALLENGEs (unauthenticated: anyone can send
// them) are answered at most once per 100 ms, a held-back answer when the
// gap ends, so a flood of them cannot make the client flood its edge.
func TestClientResponseGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, e := startClient(t, false)
		synctest.Wait()
		var ka wire.Keepalive
		time.Sleep(1100 * time.Millisecond) // past the first keepalive: its session id is on the wire
		synctest.Wait()
		for _, d := range e.sent {
			if ka.Decode(d) == nil {
				break
			}
		}
		t0 := time.Now()
		for range 50 {
			e.conn.Deliver(encode(t, &wire.Challenge{SessionID: ka.SessionID}))
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Until(t0.Add(250 * time.Millisecond)))
		synctest.Wait()
		var at []time.Duration
		for _, w := range e.log {
			if w.typ == wire.TypeResponse {
				at = append(at, w.at)
			}
		}
		if len(at) != 2 || at[1]-at[0] != 100*time.Millisecond || c.Stats().Challenges != 2 {
			t.Errorf("RESPONSEs at %v (%d answered) for 50 CHALLENGEs in 100 ms; want 2, 100 ms apart", at, c.Stats().Challenges)
		}
	})
}
