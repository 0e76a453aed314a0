package receiver_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var edgeAddr = netip.MustParseAddrPort("192.0.2.1:7171")

// fixture is an origin and the instant its periods are timed from. Tests
// build it inside a synctest bubble, where now is the bubble's virtual
// clock at the start and the receiver's device clock is time.Now; the fuzz
// target, which runs outside a bubble, fixes the device clock at now.
type fixture struct {
	origin *origin.Origin
	master []byte
	ring   *seal.KeyRing
	now    time.Time
}

func newFixture(t testing.TB) *fixture {
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{origin: o, master: master, ring: seal.NewKeyRing(o.PublicKey()), now: time.Now()}
}

// releaseAt of period p: one second apart from the fixture's now;
// presentAt two seconds after it.
func (f *fixture) at(p uint64) origin.Instants {
	r := ptp.DefaultTAIOffset.FromTime(f.now) + int64(p)*int64(time.Second)
	return origin.Instants{ReleaseAt: r, PresentAt: r + int64(2*time.Second)}
}

func (f *fixture) keys(t testing.TB, stream uint32, p uint64) (*bundle.Bundle, []seal.ContentKey) {
	keys, err := f.origin.NewContentKeys(3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.origin.Keys(stream, p, f.at(p), keys)
	if err != nil {
		t.Fatal(err)
	}
	return b, keys
}

func release(t testing.TB, b *bundle.Bundle, edgeID uint32) []byte {
	r := wire.Release{Header: wire.Header{Stream: b.Stream, Period: b.Period}, RK: b.RK, ReleaseAt: b.ReleaseAt, SentAt: b.ReleaseAt, EdgeID: edgeID}
	d := make([]byte, wire.ReleaseLen)
	if _, err := r.Encode(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// tai is t on the TAI timeline, as the receiver stamps events.
func tai(t time.Time) int64 { return ptp.DefaultTAIOffset.FromTime(t) }

// sink collects events; Run delivers them from its reading goroutines.
type sink struct {
	mu     sync.Mutex
	events []receiver.Event
}

func (s *sink) on(ev receiver.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
}

// got returns the events so far.
func (s *sink) got() []receiver.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]receiver.Event(nil), s.events...)
}

func (f *fixture) receiver(t testing.TB, s *sink, mod func(*receiver.Config)) *receiver.Receiver {
	cfg := receiver.Config{Trusted: f.ring, Master: f.master, Streams: []uint32{1, 2}, OnEvent: s.on}
	if mod != nil {
		mod(&cfg)
	}
	r, err := receiver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func feed(r *receiver.Receiver, dgs ...[]byte) {
	for _, d := range dgs {
		r.Handle(d, time.Time{}, edgeAddr)
	}
}

func TestDeliversKeysOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		b, keys := f.keys(t, 1, 7)
		feed(r, b.Shards...)
		if len(s.events) != 0 {
			t.Fatal("delivered before the RELEASE")
		}
		// The kernel stamped the RELEASE at f.now+1s; the receiver reads
		// it half a second later.
		stamp := f.now.Add(time.Second)
		time.Sleep(1500 * time.Millisecond)
		r.Handle(release(t, b, 3), stamp, edgeAddr)
		r.Handle(release(t, b, 4), stamp.Add(5), edgeAddr) // a second edge
		if len(s.events) != 1 {
			t.Fatalf("%d events, want 1", len(s.events))
		}
		ev := s.events[0]
		if ev.Stream != 1 || ev.Period != 7 || ev.ReleaseAt != b.ReleaseAt || ev.PresentAt != b.PresentAt || ev.EdgeID != 3 || ev.From != edgeAddr {
			t.Errorf("event %+v", ev)
		}
		if ev.Arrival != tai(stamp) || !ev.ArrivalByKernel {
			t.Errorf("arrival %d (by kernel %v), want the kernel stamp %v as TAI", ev.Arrival, ev.ArrivalByKernel, stamp)
		}
		if want := tai(f.now) + int64(1500*time.Millisecond); ev.Opened != want {
			t.Errorf("opened %d, want %d: the device clock when the RELEASE was handled", ev.Opened, want)
		}
		if len(ev.Keys) != len(keys) || ev.Resource != nil {
			t.Fatalf("keys %v resource %v", ev.Keys, ev.Resource)
		}
		for i := range keys {
			if ev.Keys[i] != keys[i] {
				t.Errorf("key %d differs", i)
			}
		}
		var h wire.Shard
		if err := h.Decode(b.Shards[0]); err != nil {
			t.Fatal(err)
		}
		// Shards past the k-th and the second edge's RELEASE are duplicates.
		st := r.Stats()
		if dup := uint64(len(b.Shards) - int(h.K) + 1); st.Delivered != 1 || st.Drops["duplicate"] != dup {
			t.Errorf("stats %+v", st)
		}
		// The skew histogram has the one delivered period, in its bucket.
		if want := skew.Bucket(time.Duration(ev.Arrival - ev.ReleaseAt)); st.Skew.Total() != 1 || st.Skew.Counts[want] != 1 {
			t.Errorf("skew histogram %v, want one count in bucket %d", st.Skew.Counts, want)
		}
	})
}

// TestCatchUpIsNoSkewSample: a period delivered by a catch-up copy is
// delivered and marked, and stays out of the skew histogram.
func TestCatchUpIsNoSkewSample(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		b, _ := f.keys(t, 1, 2)
		late := release(t, b, 1)
		if err := wire.AddFlags(late, wire.FlagCatchUp); err != nil {
			t.Fatal(err)
		}
		feed(r, b.Shards...)
		feed(r, late)
		if len(s.events) != 1 || !s.events[0].CatchUp {
			t.Fatalf("events %+v", s.events)
		}
		if st := r.Stats(); st.Delivered != 1 || st.Skew.Total() != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestLossAndOrder: any k of k+m shards in any order, with the RELEASE
// before or after them, deliver the period.
func TestLossAndOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		_, signer, _ := ed25519.GenerateKey(rand.Reader)
		big, err := origin.New(signer, f.master)
		if err != nil {
			t.Fatal(err)
		}
		f.ring.Add(big.PublicKey())
		rng := mrand.New(mrand.NewPCG(1, 2))
		for trial := range 50 {
			var s sink
			r := f.receiver(t, &s, nil)
			var b *bundle.Bundle
			if trial%2 == 0 {
				b, _ = f.keys(t, 2, uint64(trial))
			} else {
				// A resource big enough for k > 1.
				payload := make([]byte, 5000)
				if b, err = big.Resource(2, uint64(trial), f.at(uint64(trial)), payload); err != nil {
					t.Fatal(err)
				}
			}
			var h wire.Shard
			if err := h.Decode(b.Shards[0]); err != nil {
				t.Fatal(err)
			}
			order := rng.Perm(len(b.Shards))[:h.K]
			releaseFirst := rng.IntN(2) == 0
			if releaseFirst {
				feed(r, release(t, b, 1))
			}
			for _, i := range order {
				feed(r, b.Shards[i])
			}
			if !releaseFirst {
				feed(r, release(t, b, 1))
			}
			if len(s.events) != 1 {
				t.Fatalf("trial %d (k=%d, release first %v): %d events; stats %+v", trial, h.K, releaseFirst, len(s.events), r.Stats())
			}
			if trial%2 == 1 && len(s.events[0].Resource) != 5000 {
				t.Fatalf("trial %d: resource of %d bytes", trial, len(s.events[0].Resource))
			}
		}
	})
}

// TestBadInputNeverDelivers covers each drop reason the issue names: each
// case must deliver nothing and count its reason. Each case runs in its own
// bubble, after waiting its virtual time.
func TestBadInputNeverDelivers(t *testing.T) {
	type env struct {
		f                   *fixture
		stranger            *fixture
		b, forged, other    *bundle.Bundle
		wrongRK, genuineRel []byte
	}
	newEnv := func(t *testing.T) *env {
		e := &env{f: newFixture(t), stranger: newFixture(t)}
		e.b, _ = e.f.keys(t, 1, 5)
		e.wrongRK = release(t, e.b, 1)
		e.wrongRK[wire.HeaderLen] ^= 1
		e.genuineRel = release(t, e.b, 1)
		e.forged, _ = e.stranger.keys(t, 1, 5)
		e.other, _ = e.f.keys(t, 9, 5)
		return e
	}
	period := func(e *env, rel []byte) [][]byte { return append(append([][]byte{}, e.b.Shards...), rel) }

	cases := []struct {
		name   string
		after  time.Duration // virtual time before the datagrams
		mod    func(*env, *receiver.Config)
		dgs    func(testing.TB, *env) [][]byte
		reason string
	}{
		{"truncated", 0, nil, func(t testing.TB, e *env) [][]byte { return [][]byte{e.b.Shards[0][:40]} }, "malformed"},
		{"garbage", 0, nil, func(testing.TB, *env) [][]byte { return [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n")} }, "malformed"},
		{"session type", 0, nil, func(t testing.TB, _ *env) [][]byte { return [][]byte{keepalive(t)} }, "unexpected-type"},
		{"unknown stream", 0, nil, func(t testing.TB, e *env) [][]byte { return append(e.other.Shards, release(t, e.other, 1)) }, "unsubscribed-stream"},
		{"forged origin", 0, nil, func(t testing.TB, e *env) [][]byte { return append(e.forged.Shards, release(t, e.forged, 1)) }, "forged"},
		{"bad proof", 0, nil, func(t testing.TB, e *env) [][]byte { return [][]byte{flipLast(e.b.Shards[0])} }, "bad-proof"},
		{"wrong RK", 0, nil, func(t testing.TB, e *env) [][]byte { return period(e, e.wrongRK) }, "wrong-rk"},
		{"no master key", 0, func(_ *env, c *receiver.Config) { c.Master = nil }, func(t testing.TB, e *env) [][]byte { return period(e, e.genuineRel) }, "no-master-key"},
		{"wrong master key", 0, func(e *env, c *receiver.Config) { c.Master = e.stranger.master }, func(t testing.TB, e *env) [][]byte { return period(e, e.genuineRel) }, "unwrap-failed"},
		{"replayed old period", time.Hour, nil, func(t testing.TB, e *env) [][]byte { return period(e, e.genuineRel) }, "old-period"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t)
				var s sink
				r := e.f.receiver(t, &s, func(cfg *receiver.Config) {
					if c.mod != nil {
						c.mod(e, cfg)
					}
				})
				time.Sleep(c.after)
				feed(r, c.dgs(t, e)...)
				if len(s.events) != 0 {
					t.Fatalf("delivered %+v", s.events)
				}
				if st := r.Stats(); st.Drops[c.reason] == 0 || st.Delivered != 0 {
					t.Fatalf("no %q drop; stats %+v", c.reason, st)
				}
			})
		})
	}
}

// TestWindowForgetsOldPeriods: once a stream moves far ahead, RELEASEs and
// shards of periods below the window are dropped as old.
func TestWindowForgetsOldPeriods(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		oldB, _ := f.keys(t, 1, 1)
		feed(r, oldB.Shards[:1]...)
		newB, _ := f.keys(t, 1, 100)
		// Far beyond the announce horizon of period 1: dropped unchecked
		// while period 1 is fresh, accepted once it is stale.
		feed(r, newB.Shards...)
		if st := r.Stats(); st.Drops["future-period"] != uint64(len(newB.Shards)) || st.Assembly.Verified != 1 {
			t.Fatalf("beyond the horizon: %+v", st)
		}
		time.Sleep(fec.DefaultHorizonFresh + time.Second)
		feed(r, newB.Shards...)
		feed(r, release(t, newB, 1))
		feed(r, oldB.Shards...)
		feed(r, release(t, oldB, 1))
		if len(s.events) != 1 || s.events[0].Period != 100 {
			t.Fatalf("events %+v", s.events)
		}
		if st := r.Stats(); st.Drops["old-period"] < 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestEarlyReleasesBounded: RELEASEs that precede their body are held up
// to a bound. A flood of bogus secrets for one period does not lock out the
// genuine one after it; a flood across periods is capped and counted.
func TestEarlyReleasesBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		b, _ := f.keys(t, 1, 3)
		bogus := release(t, b, 1)
		for i := range 10_000 {
			bogus[wire.HeaderLen] = byte(i)
			bogus[wire.HeaderLen+1] = byte(i >> 8)
			feed(r, bogus)
		}
		feed(r, release(t, b, 1))
		feed(r, b.Shards...)
		if len(s.events) != 1 {
			t.Fatalf("%d events; stats %+v", len(s.events), r.Stats())
		}
		st := r.Stats()
		if st.Drops["busy"] == 0 || st.Drops["wrong-rk"] == 0 {
			t.Errorf("flood not bounded: %+v", st)
		}

		// Across periods, far ahead: no body vouches for them, so they move no
		// window, hold no slot, and are dropped as from the future.
		for p := range uint64(5_000) {
			bogus := release(t, b, 1)
			bogus[12], bogus[13] = byte(p>>8), byte(p) // header period, high bytes
			feed(r, bogus)
		}
		if got := r.Stats().Drops["future-period"]; got < 4_000 {
			t.Errorf("cross-period flood: %d future-period drops", got)
		}
		// A genuine early RELEASE of the next period still finds a slot, even
		// with bogus secrets for it arriving after.
		next, _ := f.keys(t, 1, 4)
		feed(r, release(t, next, 1))
		for i := range 10 {
			bogus := release(t, next, 1)
			bogus[wire.HeaderLen] ^= byte(i + 1)
			feed(r, bogus)
		}
		feed(r, next.Shards...)
		if len(s.events) != 2 {
			t.Fatalf("genuine early RELEASE lost to a flood after it: %d events; %+v", len(s.events), r.Stats())
		}
	})
}

func TestConfig(t *testing.T) {
	f := newFixture(t)
	on := func(receiver.Event) {}
	for name, cfg := range map[string]receiver.Config{
		"no keys":    {Streams: []uint32{1}, OnEvent: on},
		"no streams": {Trusted: f.ring, OnEvent: on},
		"no OnEvent": {Trusted: f.ring, Streams: []uint32{1}},
		"short key":  {Trusted: f.ring, Streams: []uint32{1}, OnEvent: on, Master: []byte{1}},
	} {
		if _, err := receiver.New(cfg); !errors.Is(err, receiver.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func keepalive(t testing.TB) []byte {
	var k wire.Keepalive
	d := make([]byte, k.Len())
	if _, err := k.Encode(d); err != nil {
		t.Fatal(err)
	}
	return d
}

func flipLast(d []byte) []byte {
	c := append([]byte(nil), d...)
	c[len(c)-1] ^= 0xff
	return c
}
