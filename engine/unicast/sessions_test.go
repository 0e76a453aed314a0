package unicast

import (
	"crypto/ecdh"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newSessions(t testing.TB, mod func(*SessionConfig)) *Sessions {
	cfg := SessionConfig{Streams: []uint32{1, 2}, Keepalive: time.Second, Expiry: 3 * time.Second, CookieLifetime: 10 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSessions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func enc(t testing.TB, m interface{ Encode([]byte) (int, error) }) []byte {
	b := make([]byte, wire.MaxDatagram)
	n, err := m.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func hello(t testing.TB) []byte {
	return enc(t, &wire.Hello{Nonce: [8]byte{1}, PadLen: wire.HelloMinLen - wire.HeaderLen - wire.NonceLen})
}

// testKey is the receivers' key share in these tests: one for all, which a
// real receiver never does, but the edge cannot tell.
var (
	testKey   = must(seal.NewKeyShare(rand.NewChaCha8([32]byte{1})))
	testShare = [wire.KeyShareLen]byte(testKey.PublicKey().Bytes())
)

func must(k *ecdh.PrivateKey, err error) *ecdh.PrivateKey {
	if err != nil {
		panic(err)
	}
	return k
}

// session is a receiver's view of its subscription.
type session struct {
	id  [wire.SessionIDLen]byte
	key [wire.SessionKeyLen]byte
}

// signed encodes m and signs it with the session key.
func (c session) signed(t testing.TB, m interface{ Encode([]byte) (int, error) }) []byte {
	b := enc(t, m)
	seal.SignSession(&c.key, b)
	return b
}

func (c session) keepalive(t testing.TB, seq uint32) []byte {
	return c.signed(t, &wire.Keepalive{SessionID: c.id, Seq: seq})
}

// subscribe runs HELLO and SUBSCRIBE for from and returns the session.
func subscribe(t testing.TB, s *Sessions, from netip.AddrPort, now time.Time, streams ...uint32) session {
	t.Helper()
	out := make([]byte, wire.MaxDatagram)
	a := s.Handle(hello(t), from, now, out)
	var c wire.Cookie
	if err := c.Decode(a.Reply); err != nil {
		t.Fatalf("HELLO answered %x: %v", a.Reply, err)
	}
	a = s.Handle(enc(t, &wire.Subscribe{KeyShare: testShare, Nonce: [8]byte{2}, Cookie: c.Cookie, CatchUp: 3, Streams: streams}), from, now, out)
	if !a.Subscribed {
		t.Fatalf("SUBSCRIBE answered %x", a.Reply)
	}
	return opened(t, a.Reply)
}

// opened is the session a SUBSCRIBED gives the holder of testKey.
func opened(t testing.TB, reply []byte) session {
	t.Helper()
	var sub wire.Subscribed
	if err := sub.Decode(reply); err != nil {
		t.Fatalf("SUBSCRIBE answered %x: %v", reply, err)
	}
	mask, err := seal.SessionKeyMask(testKey, &sub.KeyShare, &sub.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	return session{sub.SessionID, seal.XorKey(&sub.SealedKey, &mask)}
}

func refusal(t testing.TB, reply []byte) wire.Reason {
	t.Helper()
	var r wire.Refused
	if err := r.Decode(reply); err != nil {
		t.Fatalf("not a REFUSED: %x (%v)", reply, err)
	}
	return r.Reason
}

func addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
}

func TestHandshake(t *testing.T) {
	s := newSessions(t, nil)
	a := addr(1)
	subscribe(t, s, a, t0, 1, 7, 1) // 7 is not served, 1 twice
	dsts, _ := s.Destinations(nil, 1)
	if len(dsts) != 1 || dsts[0] != a {
		t.Fatalf("destinations of stream 1: %v", dsts)
	}
	if dsts, _ := s.Destinations(nil, 2); len(dsts) != 0 {
		t.Fatalf("destinations of stream 2: %v", dsts)
	}
	// A v4-mapped source is the same subscriber.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	subscribe(t, s, mapped, t0, 2)
	if st := s.Stats(); st.Subscribers != 1 {
		t.Fatalf("re-subscribe from the mapped address made %d subscribers", st.Subscribers)
	}
}

// TestRenewal: re-subscribing from the same address replaces the
// subscription; the same streams change no destination, catch-up is
// granted at most once a second, and stream sets no one uses are freed,
// so a client cycling through combinations cannot fill the table.
func TestRenewal(t *testing.T) {
	var streams []uint32
	for i := range 20 {
		streams = append(streams, uint32(i))
	}
	s := newSessions(t, func(c *SessionConfig) { c.Streams = streams; c.SubscribeBurst = 2000 })
	out := make([]byte, wire.MaxDatagram)
	a := addr(1)
	renew := func(now time.Time, want ...uint32) Answer {
		var c wire.Cookie
		if err := c.Decode(s.Handle(hello(t), a, now, out).Reply); err != nil {
			t.Fatal(err)
		}
		return s.Handle(enc(t, &wire.Subscribe{KeyShare: testShare, Cookie: c.Cookie, CatchUp: 4, Streams: want}), a, now, out)
	}
	if got := renew(t0, 1, 2); got.CatchUp != 4 {
		t.Fatalf("first subscription: catch-up %d", got.CatchUp)
	}
	gen := s.Generation()
	if got := renew(t0, 1, 2); got.CatchUp != 0 || s.Generation() != gen {
		t.Fatalf("same-second renewal: catch-up %d, generation %d → %d", got.CatchUp, gen, s.Generation())
	}
	if got := renew(t0.Add(2*time.Second), 1, 2); got.CatchUp != 4 {
		t.Fatalf("renewal a second later: catch-up %d", got.CatchUp)
	}
	var last Answer
	for i := range 1000 {
		last = renew(t0, uint32(i%20), uint32((i/20)%20), 19)
	}
	if len(s.setIndex) != 1 || s.Stats().Subscribers != 1 {
		t.Fatalf("%d stream sets held for %d subscriber", len(s.setIndex), s.Stats().Subscribers)
	}
	c := opened(t, last.Reply)
	s.Handle(c.signed(t, &wire.Leave{SessionID: c.id}), a, t0, out)
	if len(s.setIndex) != 0 {
		t.Fatalf("%d stream sets held after the last subscriber left", len(s.setIndex))
	}
}

// TestLinkLocalRefused: a link-local source cannot be answered without
// its zone, which the fan-out does not keep, so it gets nothing.
func TestLinkLocalRefused(t *testing.T) {
	s := newSessions(t, nil)
	out := make([]byte, wire.MaxDatagram)
	if a := s.Handle(hello(t), netip.MustParseAddrPort("[fe80::1%eth0]:4000"), t0, out); a.Reply != nil {
		t.Fatalf("answered a link-local HELLO: %x", a.Reply)
	}
}

func TestCookieBinding(t *testing.T) {
	s := newSessions(t, nil)
	out := make([]byte, wire.MaxDatagram)
	a := s.Handle(hello(t), addr(1), t0, out)
	var c wire.Cookie
	if err := c.Decode(a.Reply); err != nil {
		t.Fatal(err)
	}
	sub := func(from netip.AddrPort, now time.Time, cookie [24]byte) wire.Reason {
		a := s.Handle(enc(t, &wire.Subscribe{KeyShare: testShare, Cookie: cookie, Streams: []uint32{1}}), from, now, out)
		if a.Subscribed {
			return 0
		}
		return refusal(t, a.Reply)
	}
	forged := c.Cookie
	forged[20] ^= 1
	otherPort := netip.AddrPortFrom(addr(1).Addr(), 40001)
	for name, got := range map[string]wire.Reason{
		"other address":   sub(addr(2), t0, c.Cookie),
		"other port":      sub(otherPort, t0, c.Cookie),
		"forged":          sub(addr(1), t0, forged),
		"two windows old": sub(addr(1), t0.Add(20*time.Second), c.Cookie),
	} {
		if got != wire.ReasonBadCookie {
			t.Errorf("%s: %v, want bad cookie", name, got)
		}
	}
	if got := sub(addr(1), t0.Add(9*time.Second), c.Cookie); got != 0 {
		t.Errorf("cookie within its lifetime refused: %v", got)
	}
}

func TestLimitsAndRefusals(t *testing.T) {
	s := newSessions(t, func(c *SessionConfig) { c.MaxSubscribers = 3; c.MaxPerAddress = 2 })
	out := make([]byte, wire.MaxDatagram)
	try := func(from netip.AddrPort, streams ...uint32) Answer {
		a := s.Handle(hello(t), from, t0, out)
		var c wire.Cookie
		if err := c.Decode(a.Reply); err != nil {
			t.Fatal(err)
		}
		return s.Handle(enc(t, &wire.Subscribe{KeyShare: testShare, Cookie: c.Cookie, Streams: streams}), from, t0, out)
	}
	if r := refusal(t, try(addr(9), 5, 6).Reply); r != wire.ReasonUnknownStream {
		t.Errorf("unserved streams: %v", r)
	}
	sameIP := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(addr(1).Addr(), port) }
	try(sameIP(1), 1)
	try(sameIP(2), 1)
	if r := refusal(t, try(sameIP(3), 1).Reply); r != wire.ReasonAddressLimit {
		t.Errorf("third from one address: %v", r)
	}
	try(addr(2), 1)
	if r := refusal(t, try(addr(3), 1).Reply); r != wire.ReasonEdgeFull {
		t.Errorf("past the edge limit: %v", r)
	}
	if st := s.Stats(); st.Subscribers != 3 || st.Refused[wire.ReasonEdgeFull] != 1 || st.Refused[wire.ReasonAddressLimit] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestKeepaliveLeaveExpiry(t *testing.T) {
	s := newSessions(t, nil)
	out := make([]byte, wire.MaxDatagram)
	a, b := addr(1), addr(2)
	ca := subscribe(t, s, a, t0, 1)
	subscribe(t, s, b, t0, 1)
	echo := ca.signed(t, &wire.Keepalive{SessionID: ca.id, Seq: 1, Echo: true})
	if got := s.Handle(ca.keepalive(t, 1), a, t0.Add(2*time.Second), out).Reply; string(got) != string(echo) {
		t.Errorf("keepalive echoed %x, want %x", got, echo)
	}
	unknown := session{id: [8]byte{9}}.keepalive(t, 1)
	r := refused(t, s.Handle(unknown, a, t0, out).Reply)
	if r.Reason != wire.ReasonUnknownSession || r.Nonce != [8]byte(unknown[wire.KeepaliveLen-wire.MACLen:]) {
		t.Errorf("unknown session: %+v, want reason 6 echoing the MAC", r)
	}
	// b stays silent: at t0+5s it is past its 3 s expiry, a (seen at 2 s) is not.
	if n := s.Expire(t0.Add(5 * time.Second)); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if dsts, _ := s.Destinations(nil, 1); len(dsts) != 1 || dsts[0] != a {
		t.Fatalf("after expiry: %v", dsts)
	}
	for name, leave := range map[string][]byte{
		"wrong session id": session{id: [8]byte{7}, key: ca.key}.signed(t, &wire.Leave{SessionID: [8]byte{7}}),
		"forged MAC":       enc(t, &wire.Leave{SessionID: ca.id}),
	} {
		if a := s.Handle(leave, a, t0, out); a.Reply != nil {
			t.Errorf("%s: LEAVE answered", name)
		}
		if st := s.Stats(); st.Subscribers != 1 {
			t.Fatalf("%s: LEAVE removed the subscription", name)
		}
	}
	s.Handle(ca.signed(t, &wire.Leave{SessionID: ca.id, Seq: 2}), a, t0, out)
	if st := s.Stats(); st.Subscribers != 0 || st.Expired != 1 || st.Forged != 1 {
		t.Fatalf("after LEAVE: %+v", st)
	}
}

func refused(t testing.TB, reply []byte) wire.Refused {
	t.Helper()
	var r wire.Refused
	if err := r.Decode(reply); err != nil {
		t.Fatalf("not a REFUSED: %x (%v)", reply, err)
	}
	return r
}

// TestMovedSubscriber: a session moves to a new address as a QUIC path
// does. An authenticated KEEPALIVE from the new address only earns a
// CHALLENGE (no larger) there; the subscription stays at the old address
// until a RESPONSE from the new one returns that challenge's cookie under
// the session key. A RESPONSE with a forged MAC or another address's
// cookie moves nothing.
func TestMovedSubscriber(t *testing.T) {
	s := newSessions(t, nil)
	out := make([]byte, wire.MaxDatagram)
	old := addr(1)
	c := subscribe(t, s, old, t0, 1)
	moved := netip.AddrPortFrom(old.Addr(), 50000)
	ka := c.keepalive(t, 1)
	a := s.Handle(ka, moved, t0, out)
	var ch wire.Challenge
	if err := ch.Decode(a.Reply); err != nil || ch.SessionID != c.id || len(a.Reply) > len(ka) {
		t.Fatalf("keepalive from a new address answered %x (%v), want a CHALLENGE no larger", a.Reply, err)
	}
	still := func(when string, want netip.AddrPort) {
		t.Helper()
		if dsts, _ := s.Destinations(nil, 1); len(dsts) != 1 || dsts[0] != want {
			t.Fatalf("%s: destinations %v, want %v", when, dsts, want)
		}
	}
	still("challenged", old)
	otherCookie := ch.Cookie
	otherCookie[10] ^= 1
	for name, d := range map[string][]byte{
		"forged MAC":   enc(t, &wire.Response{SessionID: c.id, Seq: 2, Cookie: ch.Cookie}),
		"wrong cookie": c.signed(t, &wire.Response{SessionID: c.id, Seq: 2, Cookie: otherCookie}),
	} {
		if a := s.Handle(d, moved, t0, out); a.Reply != nil {
			t.Errorf("%s: answered %x", name, a.Reply)
		}
		still(name, old)
	}
	a = s.Handle(c.signed(t, &wire.Response{SessionID: c.id, Seq: 2, Cookie: ch.Cookie}), moved, t0, out)
	var echo wire.Keepalive
	if err := echo.Decode(a.Reply); err != nil || !echo.Echo || !seal.VerifySession(&c.key, a.Reply) {
		t.Fatalf("RESPONSE answered %x (%v), want a signed echo", a.Reply, err)
	}
	still("after the response", moved)
	if st := s.Stats(); st.Moved != 1 || st.Challenges != 1 || st.Forged != 1 || st.Subscribers != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestSessionKick: the attack of issue 14 — six KEEPALIVEs carrying a
// session id observed on the wire, from another port, forged or replayed —
// never ends or moves the subscription.
func TestSessionKick(t *testing.T) {
	s := newSessions(t, nil)
	out := make([]byte, wire.MaxDatagram)
	victim := addr(1)
	c := subscribe(t, s, victim, t0, 1)
	observed := c.keepalive(t, 1) // seen on the wire
	attacker := netip.AddrPortFrom(victim.Addr(), 50001)
	for i := range 6 {
		forged := enc(t, &wire.Keepalive{SessionID: c.id, Seq: uint32(2 + i)})
		for _, d := range [][]byte{forged, observed} {
			a := s.Handle(d, attacker, t0.Add(time.Duration(i)*time.Second), out)
			if len(a.Reply) > len(d) {
				t.Fatalf("answered %d bytes to %d", len(a.Reply), len(d))
			}
			var ch wire.Challenge
			if ch.Decode(a.Reply) == nil {
				// The replay earns a challenge; answering it needs the key.
				s.Handle(enc(t, &wire.Response{SessionID: c.id, Seq: 9, Cookie: ch.Cookie}), attacker, t0, out)
			}
		}
		s.Handle(c.keepalive(t, uint32(2+i)), victim, t0.Add(time.Duration(i)*time.Second), out)
	}
	if dsts, _ := s.Destinations(nil, 1); len(dsts) != 1 || dsts[0] != victim {
		t.Fatalf("destinations %v, want only the victim %v", dsts, victim)
	}
	if st := s.Stats(); st.Moved != 0 || st.Forged != 12 || st.Subscribers != 1 {
		t.Errorf("stats %+v: want nothing moved, 6 forged keepalives and 6 forged responses", st)
	}
}

// TestNoAmplification floods the session protocol from 5,000 spoofed
// sources with every kind of request, valid and not, and checks that no
// source got more bytes back than it sent: only a SUBSCRIBE with a cookie
// minted for its own address can earn more, and a spoofer never sees one.
func TestNoAmplification(t *testing.T) {
	s := newSessions(t, nil)
	out := make([]byte, wire.MaxDatagram)
	rng := rand.New(rand.NewPCG(1, 2))
	in, sent := map[netip.AddrPort]int{}, map[netip.AddrPort]int{}
	var cookie [24]byte // one a spoofer could have got for its own address
	{
		var c wire.Cookie
		if err := c.Decode(s.Handle(hello(t), addr(99999), t0, out).Reply); err != nil {
			t.Fatal(err)
		}
		cookie = c.Cookie
	}
	reqs := [][]byte{
		hello(t),
		enc(t, &wire.Subscribe{KeyShare: testShare, Cookie: cookie, CatchUp: 16, Streams: []uint32{1, 2}}),
		enc(t, &wire.Keepalive{SessionID: [8]byte{1}}),
		enc(t, &wire.Leave{}),
		[]byte("garbage"),
	}
	for range 20_000 {
		from := addr(rng.IntN(5000))
		req := reqs[rng.IntN(len(reqs))]
		a := s.Handle(req, from, t0, out)
		in[from] += len(req)
		sent[from] += len(a.Reply)
		if a.Subscribed {
			t.Fatalf("a spoofed source subscribed with another address's cookie")
		}
	}
	for from, n := range sent {
		if n > in[from] {
			t.Fatalf("%v got %d bytes for %d sent", from, n, in[from])
		}
	}
	if st := s.Stats(); st.BytesOut > st.BytesIn || st.Subscribers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSessionConfig(t *testing.T) {
	for name, cfg := range map[string]SessionConfig{
		"no streams":         {},
		"expiry < keepalive": {Streams: []uint32{1}, Keepalive: time.Second, Expiry: time.Millisecond * 500},
		"short cookie":       {Streams: []uint32{1}, CookieLifetime: time.Millisecond},
	} {
		if _, err := NewSessions(cfg); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// FuzzSessions: any datagram from any source is answered, if at all, with
// no more bytes than it had (a fuzzer cannot forge a cookie), and never
// panics.
func FuzzSessions(f *testing.F) {
	s := newSessions(f, nil)
	f.Add(hello(f), uint32(1))
	f.Add(enc(f, &wire.Subscribe{KeyShare: testShare, Streams: []uint32{1}}), uint32(2))
	f.Add(enc(f, &wire.Keepalive{}), uint32(3))
	f.Add(enc(f, &wire.Leave{}), uint32(4))
	out := make([]byte, wire.MaxDatagram)
	f.Fuzz(func(t *testing.T, d []byte, src uint32) {
		a := s.Handle(d, addr(int(src)), t0, out)
		if len(a.Reply) > len(d) || a.Subscribed {
			t.Fatalf("answered %d bytes (subscribed %v) to %d", len(a.Reply), a.Subscribed, len(d))
		}
	})
}

// BenchmarkSessionMemory measures the heap held per subscriber — its slot
// (with the 18-byte compact address), the address index, and the
// subscribe-rate table the sweep has not pruned yet (BenchmarkEdgeMemory
// counts after the sweep) — for 100,000 subscribers.
func BenchmarkSessionMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		before := heapInUse()
		s := newSessions(b, func(c *SessionConfig) { c.MaxSubscribers = n; c.MaxPerAddress = n })
		out := make([]byte, wire.MaxDatagram)
		var c wire.Cookie
		h := hello(b)
		sub := &wire.Subscribe{KeyShare: testShare, Streams: []uint32{1}}
		buf := make([]byte, wire.MaxDatagram)
		for i := range n {
			from := addr(i)
			if err := c.Decode(s.Handle(h, from, t0, out).Reply); err != nil {
				b.Fatal(err)
			}
			sub.Cookie = c.Cookie
			k, _ := sub.Encode(buf)
			if a := s.Handle(buf[:k], from, t0, out); !a.Subscribed {
				b.Fatal("not subscribed")
			}
		}
		b.ReportMetric(float64(heapInUse()-before)/n, "bytes/subscriber")
		if s.Stats().Subscribers != n {
			b.Fatal("lost subscribers")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkHello is the flood path: a HELLO from a new address answered
// with a COOKIE, under the table's lock.
func BenchmarkHello(b *testing.B) {
	s := newSessions(b, nil)
	h := hello(b)
	out := make([]byte, wire.MaxDatagram)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if a := s.Handle(h, addr(i), t0, out); a.Reply == nil {
			b.Fatal("no COOKIE")
		}
	}
}
