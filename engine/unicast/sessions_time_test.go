package unicast

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// These tests run in virtual time (testing/synctest): the instants they
// assert are exact.

// TestCookieWindows: a cookie is good for the window it was minted in
// and the next — windows are Unix time in lifetimes — and refused from
// the first instant of the one after, so it lives between one and two
// lifetimes; a HELLO then gets a cookie of the new window.
func TestCookieWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const life = 10 * time.Second
		s := newSessions(t, func(c *SessionConfig) { c.CookieLifetime = life })
		out := make([]byte, wire.MaxDatagram)
		sleepTo := func(at time.Time) { time.Sleep(time.Until(at)) }
		cookie := func(from netip.AddrPort) [wire.CookieLen]byte {
			var c wire.Cookie
			if err := c.Decode(s.Handle(hello(t), from, time.Now(), out).Reply); err != nil {
				t.Fatal(err)
			}
			return c.Cookie
		}
		subscribe := func(from netip.AddrPort, c [wire.CookieLen]byte) bool {
			a := s.Handle(enc(t, &wire.Subscribe{KeyShare: testShare, Cookie: c, Streams: []uint32{1}}), from, time.Now(), out)
			if !a.Subscribed && refusal(t, a.Reply) != wire.ReasonBadCookie {
				t.Fatalf("refused for another reason than the cookie: %v", refusal(t, a.Reply))
			}
			return a.Subscribed
		}
		// Start of the window after the current one.
		w := time.Unix(0, (time.Now().UnixNano()/int64(life)+1)*int64(life))
		sleepTo(w.Add(3 * time.Second))
		early := cookie(addr(1)) // 3 s into window w
		sleepTo(w.Add(life - time.Nanosecond))
		late := cookie(addr(2)) // the last instant of window w
		if early == late {
			t.Fatal("two addresses got the same cookie")
		}
		sleepTo(w.Add(2*life - time.Nanosecond))
		if !subscribe(addr(1), early) || !subscribe(addr(2), late) {
			t.Fatal("cookies refused in the last instant of the next window")
		}
		sleepTo(w.Add(2 * life))
		if subscribe(addr(1), early) || subscribe(addr(2), late) {
			t.Fatal("cookies accepted two windows after they were minted")
		}
		fresh := cookie(addr(1))
		if fresh == early || !subscribe(addr(1), fresh) {
			t.Fatal("no working cookie of the new window")
		}
		if st := s.Stats(); st.Refused[wire.ReasonBadCookie] != 2 || st.Subscribers != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestExpirySweep: the server's sweep drops a silent subscription at the
// first tick after it has been silent for the expiry (in whole seconds),
// not a tick before; a keepalive restarts the count.
func TestExpirySweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSessions(t, nil) // keepalive 1 s, expiry 3 s
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { sweep(ctx, s); close(done) }()
		defer func() { cancel(); <-done }()
		t0 := time.Now()
		at := func(d time.Duration) { time.Sleep(time.Until(t0.Add(d))); synctest.Wait() }
		out := make([]byte, wire.MaxDatagram)
		a, b := addr(1), addr(2)
		ca := subscribe(t, s, a, t0, 1)
		subscribe(t, s, b, t0, 1)
		at(2500 * time.Millisecond)
		if got := s.Handle(ca.keepalive(t, 1), a, time.Now(), out).Reply; got == nil {
			t.Fatal("keepalive not echoed")
		}
		for _, c := range []struct {
			at                time.Duration
			subscribers, gone int
		}{
			// b, silent since 0 s, goes at the 4 s tick; a, seen at 2 s (in
			// whole seconds), at the 6 s tick.
			{4*time.Second - time.Nanosecond, 2, 0},
			{4 * time.Second, 1, 1},
			{6*time.Second - time.Nanosecond, 1, 1},
			{6 * time.Second, 0, 2},
		} {
			at(c.at)
			if st := s.Stats(); st.Subscribers != c.subscribers || st.Expired != uint64(c.gone) {
				t.Errorf("at %v: %d subscribers, %d expired; want %d, %d", c.at, st.Subscribers, st.Expired, c.subscribers, c.gone)
			}
			if c.subscribers == 1 {
				if dsts, _ := s.Destinations(nil, 1); len(dsts) != 1 || dsts[0] != a {
					t.Errorf("at %v: destinations %v, want %v", c.at, dsts, a)
				}
			}
		}
	})
}
