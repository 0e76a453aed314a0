package edge_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// The edge's tests run in virtual time (testing/synctest): the clocks are
// Sims reading the bubble's clock, the edges wait with ptp.Sleeper, and
// every instant asserted is exact.

type fixture struct {
	origin *origin.Origin
	ring   *seal.KeyRing
}

func newFixture(t testing.TB) fixture {
	o, _, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return fixture{origin: o, ring: seal.NewKeyRing(o.PublicKey())}
}

func (f fixture) bundle(t testing.TB, stream uint32, period uint64, releaseAt int64) *bundle.Bundle {
	keys, err := f.origin.NewContentKeys(2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.origin.Keys(stream, period, origin.Instants{ReleaseAt: releaseAt, PresentAt: releaseAt + int64(time.Second)}, keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newEdge is edge.New with the virtual-time waiter (unless cfg has a
// ThenWaiter, also in virtual time), failing t on error.
func newEdge(t testing.TB, cfg edge.Config) *edge.Edge {
	t.Helper()
	if _, ok := cfg.Waiter.(ptp.ThenWaiter); !ok {
		cfg.Waiter = ptp.Sleeper{}
	}
	e, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs e in the bubble and returns a stop function that cancels it
// and returns Run's error. If the test has not stopped it, cleanup does and
// expects context.Canceled.
func start(t *testing.T, e *edge.Edge) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

// sleepUntil sleeps until the bubble's true time (TAI ns) reaches at, and
// then until every goroutine in the bubble is blocked again: whatever was
// due at at has happened.
func sleepUntil(at int64) {
	time.Sleep(time.Duration(at - ptp.SystemTAI()))
	synctest.Wait()
}

const ms = int64(time.Millisecond)

// quietBefore is the edge's quiet time before a release (carousel.go):
// the rounds end that long before releaseAt.
const quietBefore = 50 * ms

// roundsAt are the clock times of a period's carousel rounds: spread
// evenly from its announce time to quietBefore ahead of its release.
func roundsAt(announce, releaseAt int64, rounds int) []int64 {
	span := max(releaseAt-quietBefore-announce, 0)
	var at []int64
	for i := range rounds {
		at = append(at, announce+span*int64(i)/int64(rounds))
	}
	return at
}

// send is what a test expects a Sender to have seen: one datagram's
// metadata.
type send struct {
	at     int64
	typ    wire.Type
	stream uint32
	period uint64
}

func sends(got []edgetest.Sent) []send {
	var out []send
	for _, s := range got {
		out = append(out, send{s.At, s.Type, s.Stream, s.Period})
	}
	return out
}

func decodeRelease(t *testing.T, d []byte) wire.Release {
	t.Helper()
	var r wire.Release
	if err := r.Decode(d); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNeverEarlyAndCarousel runs three periods on clocks that read ahead
// of, behind and exactly at true time, each erring by less than its stated
// bound, and checks every datagram against true time: each period's
// ANNOUNCE goes out exactly Rounds times at the computed instants (clock
// time, so true time minus the offset); its first RELEASE copy at the first
// true instant the clock's earliest bound reaches releaseAt — releaseAt
// itself on a perfect clock — and the copies exactly Spacing apart, stamped
// with that bound.
func TestNeverEarlyAndCarousel(t *testing.T) {
	const (
		rounds, repeat = 3, 2
		spacing        = time.Millisecond
		lead           = 300 * time.Millisecond
		periods        = 3
	)
	for _, c := range []struct {
		name        string
		offset, unc time.Duration
	}{
		{"exact", 0, 0},
		{"ahead", 3 * time.Millisecond, 4 * time.Millisecond},
		{"behind", -3 * time.Millisecond, 4 * time.Millisecond},
		// The latest bound reaches the quiet time before the last round
		// is due: no round on schedule may be dropped for it.
		{"uncertain", 0, 100 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				clock := ptp.NewSim(ptp.WithOffset(c.offset), ptp.WithUncertainty(c.unc, 0))
				rec := &edgetest.Sender{True: clock.True}
				e := newEdge(t, edge.Config{
					ID: 9, Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec},
					Lead: lead, Rounds: rounds, Repeat: repeat, Spacing: spacing,
				})
				t0 := clock.True()
				var want []send
				bundles := map[uint64]*bundle.Bundle{}
				for p := uint64(1); p <= periods; p++ {
					at := t0 + int64(p)*int64(time.Second)
					b := f.bundle(t, 5, p, at)
					bundles[p] = b
					if err := e.Add(b); err != nil {
						t.Fatal(err)
					}
					for _, r := range roundsAt(at-int64(lead), at, rounds) {
						for range b.Shards {
							want = append(want, send{r - int64(c.offset), wire.TypeAnnounce, 5, p})
						}
					}
					first := at - int64(c.offset) + int64(c.unc) // earliest bound reaches at
					for i := range repeat {
						want = append(want, send{first + int64(i)*int64(spacing), wire.TypeRelease, 5, p})
					}
				}
				start(t, e)
				sleepUntil(t0 + periods*int64(time.Second) + 200*ms)

				got := rec.Sent()
				if !slices.Equal(sends(got), want) {
					t.Fatalf("sent\n%v\nwant\n%v", sends(got), want)
				}
				copies := map[uint64]int{}
				shard := map[uint64]int{}
				for _, s := range got {
					b := bundles[s.Period]
					switch s.Type {
					case wire.TypeAnnounce:
						if k := shard[s.Period] % len(b.Shards); !slices.Equal(s.Datagram, b.Shards[k]) {
							t.Errorf("period %d: ANNOUNCE datagram %d is not shard %d", s.Period, shard[s.Period], k)
						}
						shard[s.Period]++
					case wire.TypeRelease:
						r := decodeRelease(t, s.Datagram)
						if sentAt := b.ReleaseAt + int64(copies[s.Period])*int64(spacing); r.EdgeID != 9 || r.RK != b.RK || r.ReleaseAt != b.ReleaseAt || r.SentAt != sentAt {
							t.Errorf("period %d copy %d: edge %d, releaseAt %d, sentAt %d (want %d), RK right %v",
								s.Period, copies[s.Period], r.EdgeID, r.ReleaseAt, r.SentAt, sentAt, r.RK == b.RK)
						}
						copies[s.Period]++
					}
				}
				st := e.Stats()
				if st.Rounds != periods*rounds || st.ShardsSent != uint64(len(want)-periods*repeat) || st.Released != periods ||
					st.ReleaseCopies != periods*repeat || st.SendErrors != 0 || st.Holds != 0 || st.MaxLateness != 0 || st.Pending != 0 {
					t.Errorf("stats %+v", st)
				}
				if n := rec.Batches(wire.TypeRelease); n != periods*repeat {
					t.Errorf("%d RELEASE batches, want %d", n, periods*repeat)
				}
				if got := e.Released(5); len(got) != periods || got[0].Period != 1 || got[periods-1].Period != periods {
					t.Errorf("released history %v", got)
				}
			})
		})
	}
}

// TestNeverEarlyJitter: on a clock whose reads jitter within its bound, no
// RELEASE is ever sent before releaseAt by true time, every ANNOUNCE round
// goes out before it, and the counts are exact.
func TestNeverEarlyJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rounds, repeat, periods = 3, 2, 3
		f := newFixture(t)
		clock := ptp.NewSim(ptp.WithJitter(2*time.Millisecond, 7), ptp.WithUncertainty(2*time.Millisecond, 0))
		rec := &edgetest.Sender{True: clock.True}
		e := newEdge(t, edge.Config{
			Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec},
			Lead: 200 * time.Millisecond, Rounds: rounds, Repeat: repeat, Spacing: time.Millisecond,
		})
		t0 := clock.True()
		want := map[uint64]int64{}
		for p := uint64(1); p <= periods; p++ {
			want[p] = t0 + int64(p)*250*ms
			if err := e.Add(f.bundle(t, 5, p, want[p])); err != nil {
				t.Fatal(err)
			}
		}
		start(t, e)
		sleepUntil(t0 + periods*250*ms + 100*ms)
		releases, announces := map[uint64]int{}, map[uint64]int{}
		for _, s := range rec.Sent() {
			switch s.Type {
			case wire.TypeRelease:
				releases[s.Period]++
				if s.At < want[s.Period] {
					t.Errorf("period %d: RELEASE sent %v before releaseAt", s.Period, time.Duration(want[s.Period]-s.At))
				}
			case wire.TypeAnnounce:
				announces[s.Period]++
				if s.At >= want[s.Period] {
					t.Errorf("period %d: ANNOUNCE sent %v after releaseAt", s.Period, time.Duration(s.At-want[s.Period]))
				}
			}
		}
		k := len(f.bundle(t, 5, 1, t0).Shards)
		for p := uint64(1); p <= periods; p++ {
			if releases[p] != repeat || announces[p] != rounds*k {
				t.Errorf("period %d: %d RELEASE copies, %d ANNOUNCE datagrams; want %d and %d rounds of %d", p, releases[p], announces[p], repeat, rounds, k)
			}
		}
	})
}

// TestUnsynchronizedHolds: an edge whose clock cannot vouch for the instant
// sends no RELEASE, looks again every Retry and counts each hold; when sync
// returns it releases at its next look — late, never early — and reports
// the holds, the lateness and the fan-out time exactly.
func TestUnsynchronizedHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const retry = 5 * time.Millisecond
		f := newFixture(t)
		clock := ptp.NewSim(ptp.WithUncertainty(time.Millisecond, 0))
		clock.SetState(ptp.StateUnsynchronized, "test: no PTP master")
		rec := &edgetest.Sender{True: clock.True, ReleaseDelay: 3 * time.Millisecond}
		var reports []edge.Report
		e := newEdge(t, edge.Config{
			Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Retry: retry, Repeat: 3, Spacing: 2 * time.Millisecond,
			OnRelease: func(r edge.Report) { reports = append(reports, r) },
		})
		t0 := clock.True()
		at := t0 + 20*ms
		if err := e.Add(f.bundle(t, 1, 1, at)); err != nil {
			t.Fatal(err)
		}
		start(t, e)
		// One hold at t0 and one every Retry after it, 21 by t0+100ms.
		sleepUntil(t0 + 100*ms)
		if n := len(rec.Of(wire.TypeRelease)); n != 0 {
			t.Fatalf("%d RELEASE datagrams sent on an unsynchronized clock", n)
		}
		if st := e.Stats(); st.Holds != 21 || st.Released != 0 || st.Pending != 1 {
			t.Fatalf("after 100 ms unsynchronized: stats %+v", st)
		}
		clock.SetState(ptp.StateSynchronized, "test: master back")
		sleepUntil(t0 + 200*ms)
		// Released at the next look, t0+105ms: each copy takes 3 ms to send
		// and the next follows 2 ms after.
		var got []int64
		for _, s := range rec.Of(wire.TypeRelease) {
			got = append(got, s.At-t0)
		}
		if want := []int64{105 * ms, 110 * ms, 115 * ms}; !slices.Equal(got, want) {
			t.Errorf("RELEASE copies at %v after start, want %v", got, want)
		}
		// Lateness is by the earliest bound: 105 ms − 1 ms − 20 ms.
		if len(reports) != 1 || reports[0].Held != 21 || reports[0].Lateness != 84*time.Millisecond ||
			reports[0].FanOut != 3*time.Millisecond || reports[0].Copies != 3 {
			t.Fatalf("reports %+v", reports)
		}
		if st := e.Stats(); st.Holds != 21 || st.Released != 1 || st.MaxLateness != 84*time.Millisecond {
			t.Errorf("stats %+v", st)
		}
	})
}

// runningEdge starts, in the bubble, an edge (one RELEASE copy) with one
// recording sender, and returns 10 ms later, with the true time then.
func runningEdge(t *testing.T) (f fixture, rec *edgetest.Sender, e *edge.Edge, now int64) {
	f = newFixture(t)
	clock := ptp.NewSim()
	rec = &edgetest.Sender{True: clock.True}
	e = newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Repeat: 1})
	start(t, e)
	sleepUntil(clock.True() + 10*ms)
	return f, rec, e, clock.True()
}

// TestPastBundleKeptForCatchUp: a bundle whose instant had passed when it
// arrived (an edge started or restarted mid-event, handed the origin's
// earlier periods) is not sent as a live release: it used to go out at
// once, seconds late, often as RELEASE copies with no ANNOUNCE. It joins
// the catch-up history, body and RELEASE, and is counted.
func TestPastBundleKeptForCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, rec, e, added := runningEdge(t)
		b := f.bundle(t, 1, 1, added-int64(time.Second))
		if err := e.Add(b); err != nil {
			t.Fatal(err)
		}
		sleepUntil(added + int64(time.Second))
		if got := rec.Sent(); len(got) != 0 {
			t.Errorf("a past period went out live: %v", sends(got))
		}
		if st := e.Stats(); st.Released != 0 || st.Past != 1 || st.BundlesAccepted != 1 || st.Pending != 0 {
			t.Errorf("stats %+v", st)
		}
		rel := e.Released(1)
		if len(rel) != 1 || rel[0].Period != 1 || len(rel[0].Shards) == 0 {
			t.Fatalf("catch-up history %+v", rel)
		}
		if h, err := wire.Peek(rel[0].CatchUp); err != nil || h.Flags&wire.FlagCatchUp == 0 {
			t.Errorf("catch-up copy %+v, %v", h, err)
		}
		var r wire.Release
		if err := r.Decode(rel[0].Release); err != nil || r.SentAt < b.ReleaseAt {
			t.Errorf("RELEASE kept for catch-up: %+v, %v", r, err)
		}
		// A second copy of it is a duplicate, not a second chance.
		if err := e.Add(b); !errors.Is(err, edge.ErrDuplicate) {
			t.Errorf("past bundle again: %v", err)
		}
	})
}

// TestLateBundleAnnouncedAtOnce: a bundle that arrives before its instant
// but after its lead has every round of its ANNOUNCE sent at once, before
// its RELEASE at the instant. The release loop may take the period before
// the carousel looks at it; the ANNOUNCE must go out all the same (it did
// not: a late bundle was often released with no body at all, which opens
// nothing).
func TestLateBundleAnnouncedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, rec, e, added := runningEdge(t)
		at := added + 5*ms
		b := f.bundle(t, 1, 1, at)
		if err := e.Add(b); err != nil {
			t.Fatal(err)
		}
		sleepUntil(added + int64(time.Second))
		want := []send{}
		for range edge.DefaultRounds * len(b.Shards) {
			want = append(want, send{added, wire.TypeAnnounce, 1, 1})
		}
		want = append(want, send{at, wire.TypeRelease, 1, 1})
		if got := sends(rec.Sent()); !slices.Equal(got, want) {
			t.Errorf("sent %v, want %v", got, want)
		}
		if st := e.Stats(); st.Released != 1 || st.Rounds != edge.DefaultRounds || st.Past != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestAddRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		rec := &edgetest.Sender{True: clock.True}
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, MaxPending: 2, Keep: 1, Repeat: 1})
		far := clock.True() + int64(time.Hour)
		b1 := f.bundle(t, 1, 10, far)
		if err := e.Add(b1); err != nil {
			t.Fatal(err)
		}
		if err := e.Add(b1); !errors.Is(err, edge.ErrDuplicate) {
			t.Errorf("same bundle twice: %v", err)
		}
		if err := e.Add(f.bundle(t, 1, 10, far)); !errors.Is(err, edge.ErrConflict) {
			t.Errorf("second bundle for a period: %v", err)
		}
		if err := e.Add(f.bundle(t, 1, 11, far)); err != nil {
			t.Fatal(err)
		}
		if err := e.Add(f.bundle(t, 1, 12, far)); !errors.Is(err, edge.ErrBusy) {
			t.Errorf("past MaxPending: %v", err)
		}
		other := newFixture(t)
		if err := e.Add(other.bundle(t, 1, 13, far)); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("untrusted origin: %v", err)
		}
		if st := e.Stats(); st.BundlesAccepted != 2 || st.BundlesRefused != 4 || st.Pending != 2 {
			t.Errorf("stats %+v", st)
		}

		// Release one period; with Keep 1 anything older is stale.
		e2 := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Keep: 1, Repeat: 1})
		start(t, e2)
		if err := e2.Add(f.bundle(t, 1, 20, clock.True())); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := e2.Stats().Released; n != 1 {
			t.Fatalf("released %d", n)
		}
		if err := e2.Add(f.bundle(t, 1, 19, clock.True())); !errors.Is(err, edge.ErrStale) {
			t.Errorf("older than the kept history: %v", err)
		}
		if err := e2.Add(f.bundle(t, 1, 20, clock.True())); !errors.Is(err, edge.ErrConflict) {
			t.Errorf("released period re-added with other keys: %v", err)
		}
	})
}

func TestConfig(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim()
	rec := &edgetest.Sender{}
	for name, cfg := range map[string]edge.Config{
		"no clock":   {Trusted: f.ring, Senders: []edge.Sender{rec}},
		"no keys":    {Clock: clock, Senders: []edge.Sender{rec}},
		"no senders": {Clock: clock, Trusted: f.ring},
		"negative":   {Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Lead: -1},
	} {
		if _, err := edge.New(cfg); !errors.Is(err, edge.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	e, err := edge.New(edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}})
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic: the first Run, on a cancelled context, returns at
	// once, and the edge stays spent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("first Run: %v", err)
	}
	if err := e.Run(ctx); !errors.Is(err, edge.ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
}

// TestSendErrorsCounted: a failing sender is counted and logged, and the
// edge goes on: the good sender gets every copy, the release is recorded,
// and the report counts no copy as sent to every sender.
func TestSendErrorsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		bad := &edgetest.Sender{True: clock.True}
		bad.Fail(errors.New("link down"))
		good := &edgetest.Sender{True: clock.True}
		var reports []edge.Report
		e := newEdge(t, edge.Config{
			Clock: clock, Trusted: f.ring, Senders: []edge.Sender{bad, good}, Repeat: 2, Spacing: time.Millisecond,
			OnRelease: func(r edge.Report) { reports = append(reports, r) },
		})
		start(t, e)
		at := clock.True() + 30*ms
		if err := e.Add(f.bundle(t, 1, 1, at)); err != nil {
			t.Fatal(err)
		}
		sleepUntil(at + 100*ms)
		// One ANNOUNCE batch (every round is overdue: the lead is longer than
		// the time left) and two RELEASE copies, each failing on bad.
		if st := e.Stats(); st.SendErrors != 3 || st.Released != 1 || st.ReleaseCopies != 2 {
			t.Errorf("stats %+v", st)
		}
		if n := len(good.Of(wire.TypeRelease)); n != 2 || len(bad.Sent()) != 0 {
			t.Errorf("good sender got %d copies, bad %d datagrams", n, len(bad.Sent()))
		}
		if len(reports) != 1 || reports[0].Copies != 0 || len(e.Released(1)) != 1 {
			t.Errorf("reports %+v, released %d", reports, len(e.Released(1)))
		}
	})
}

// TestSameInstantOneBatch: periods of several streams due at one instant
// go out together, one RELEASE batch per copy per sender, in stream order.
func TestSameInstantOneBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		a, b := &edgetest.Sender{True: clock.True}, &edgetest.Sender{True: clock.True}
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{a, b}, Repeat: 3, Spacing: time.Millisecond})
		at := clock.True() + int64(time.Second)
		for _, stream := range []uint32{3, 1, 2} {
			if err := e.Add(f.bundle(t, stream, 7, at)); err != nil {
				t.Fatal(err)
			}
		}
		start(t, e)
		sleepUntil(at + 100*ms)
		for i, s := range []*edgetest.Sender{a, b} {
			var got []send
			for _, d := range s.Of(wire.TypeRelease) {
				got = append(got, send{d.At - at, d.Type, d.Stream, d.Period})
			}
			var want []send
			for c := range int64(3) {
				for stream := uint32(1); stream <= 3; stream++ {
					want = append(want, send{c * ms, wire.TypeRelease, stream, 7})
				}
			}
			if !slices.Equal(got, want) || s.Batches(wire.TypeRelease) != 3 {
				t.Errorf("sender %d: %d batches %v, want 3 batches %v", i, s.Batches(wire.TypeRelease), got, want)
			}
		}
		if st := e.Stats(); st.Released != 3 || st.ReleaseCopies != 18 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestUnsynchronizedStartSpreadsRounds: an edge that starts before its
// clock is synchronized (PTP not locked yet) still spreads each period's
// rounds over its lead. The release loop used to take the due period,
// send every round it had not sent in one burst, at the bundle's arrival,
// and mark them done before its wait failed on the unsynchronized clock:
// the rounds were never repeated, and a receiver joining later had no
// ANNOUNCE at all.
func TestUnsynchronizedStartSpreadsRounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rounds = 4
		lead := time.Second
		f := newFixture(t)
		clock := ptp.NewSim()
		clock.SetState(ptp.StateUnsynchronized, "test: PTP not locked yet")
		rec := &edgetest.Sender{True: clock.True}
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Lead: lead, Rounds: rounds, Repeat: 1})
		t0 := clock.True()
		at := t0 + 3*int64(time.Second)
		b := f.bundle(t, 1, 1, at)
		if err := e.Add(b); err != nil {
			t.Fatal(err)
		}
		start(t, e)
		sleepUntil(t0 + 500*ms)
		clock.SetState(ptp.StateSynchronized, "test: locked")
		sleepUntil(at + 100*ms)
		var times []int64
		for _, s := range rec.Of(wire.TypeAnnounce) {
			if len(times) == 0 || times[len(times)-1] != s.At {
				times = append(times, s.At)
			}
		}
		// Rounds every (lead − 50 ms quiet) / rounds from releaseAt − lead.
		span := int64(lead) - 50*ms
		var want []int64
		for i := range int64(rounds) {
			want = append(want, at-int64(lead)+span*i/rounds)
		}
		if !slices.Equal(times, want) {
			t.Errorf("rounds at %v after start, want %v", offsets(times, t0), offsets(want, t0))
		}
		if n := len(rec.Of(wire.TypeAnnounce)); n != rounds*len(b.Shards) {
			t.Errorf("%d ANNOUNCE datagrams, want %d rounds of %d", n, rounds, len(b.Shards))
		}
		if rel := rec.Of(wire.TypeRelease); len(rel) != 1 || rel[0].At != at {
			t.Errorf("RELEASE %v, want one at releaseAt", rel)
		}
	})
}

func offsets(ts []int64, t0 int64) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, x := range ts {
		out[i] = time.Duration(x - t0)
	}
	return out
}

// TestFailedSendsAreNotReleases: a sender that fails the way sendmmsg does
// (n = -1 with the error) used to wrap ReleaseCopies to 2^64−7 and count
// the period as released. Nothing counts down or wraps, the datagrams it
// did not take are counted apart, a period no sender took is a failed
// release, and the failing sender is reported until it takes a send.
func TestFailedSendsAreNotReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		var failing atomic.Bool
		failing.Store(true)
		var took atomic.Int64
		down := edge.SenderFunc(func(_ wire.Type, dgs [][]byte) (int, error) {
			if failing.Load() {
				return -1, errors.New("sendmmsg: network is unreachable")
			}
			took.Add(int64(len(dgs)))
			return len(dgs), nil
		})
		// A sender that takes one datagram of each batch and says nothing.
		short := edge.SenderFunc(func(_ wire.Type, dgs [][]byte) (int, error) { return min(len(dgs), 1), nil })
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{down}, Repeat: 7, Spacing: time.Millisecond})
		start(t, e)
		at := clock.True() + 30*ms
		if err := e.Add(f.bundle(t, 1, 1, at)); err != nil {
			t.Fatal(err)
		}
		sleepUntil(at + 100*ms)
		st := e.Stats()
		if st.Released != 0 || st.ReleaseFailed != 1 || st.ReleaseCopies != 0 || st.ReleaseUnsent != 7 ||
			st.ShardsSent != 0 || st.AnnounceUnsent == 0 || st.SendErrors != 7+1 || st.FailingSenders != 1 {
			t.Errorf("all sends failed: %+v", st)
		}
		failing.Store(false)
		if err := e.Add(f.bundle(t, 1, 2, at+int64(time.Second))); err != nil {
			t.Fatal(err)
		}
		sleepUntil(at + int64(time.Second) + 100*ms)
		if st := e.Stats(); st.Released != 1 || st.ReleaseFailed != 1 || st.ReleaseCopies != 7 || st.FailingSenders != 0 || len(e.SenderErrors()) != 0 {
			t.Errorf("sender back: %+v", st)
		}

		// Two periods due at one instant, a sender taking only the first.
		e2 := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{short}, Repeat: 2, Spacing: time.Millisecond})
		start(t, e2)
		at2 := clock.True() + 30*ms
		for _, s := range []uint32{1, 2} {
			if err := e2.Add(f.bundle(t, s, 1, at2)); err != nil {
				t.Fatal(err)
			}
		}
		sleepUntil(at2 + 100*ms)
		if st := e2.Stats(); st.Released != 1 || st.ReleaseFailed != 1 || st.ReleaseCopies != 2 || st.ReleaseUnsent != 2 || st.FailingSenders != 1 {
			t.Errorf("a sender taking half: %+v", st)
		}
	})
}

// thenWaiter is a ptp.ThenWaiter in virtual time: a Sleeper that says
// whether the edge is inside then.
type thenWaiter struct {
	ptp.Sleeper
	inThen atomic.Bool
}

func (w *thenWaiter) WaitUntilThen(ctx context.Context, c ptp.Clock, t int64, then func(time.Duration)) (time.Duration, error) {
	late, err := w.WaitUntil(ctx, c, t)
	if err == nil {
		w.inThen.Store(true)
		then(late)
		w.inThen.Store(false)
	}
	return late, err
}

// TestFirstCopyOnTheWaitingThread: with a ThenWaiter (ptp.Precise), the
// first RELEASE copy is sent inside then — on the thread that waited,
// while it may still be at SCHED_FIFO — and the later copies after.
// Sent after WaitUntil returned, the first copy followed the thread's
// drop to normal priority, where a busy machine pre-empts it at once.
func TestFirstCopyOnTheWaitingThread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		w := &thenWaiter{}
		var inside []bool
		s := edge.SenderFunc(func(typ wire.Type, dgs [][]byte) (int, error) {
			if typ == wire.TypeRelease {
				inside = append(inside, w.inThen.Load())
			}
			return len(dgs), nil
		})
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{s}, Repeat: 3, Spacing: time.Millisecond, Waiter: w})
		start(t, e)
		at := clock.True() + 30*ms
		if err := e.Add(f.bundle(t, 1, 1, at)); err != nil {
			t.Fatal(err)
		}
		sleepUntil(at + 100*ms)
		if !slices.Equal(inside, []bool{true, false, false}) {
			t.Errorf("RELEASE copies sent inside then: %v, want the first only", inside)
		}
		if st := e.Stats(); st.Released != 1 || st.ReleaseCopies != 3 {
			t.Errorf("stats %+v", st)
		}
	})
}

// rtWaiter is a thenWaiter that can also run a release "at real-time
// priority" (Realtime), saying whether the edge is inside.
type rtWaiter struct {
	thenWaiter
	inRT atomic.Bool
}

func (w *rtWaiter) Realtime(f func()) bool {
	w.inRT.Store(true)
	defer w.inRT.Store(false)
	f()
	return true
}

// TestLongWakeHeadKeepsRounds: with a Waiter that runs the release at
// real-time priority and a long WakeHead (an edge at SCHED_FIFO hands over
// a second ahead, since its own timers are late on a busy machine), the
// release runs inside Realtime, the first copy inside then, and the
// periods are still taken only just before the instant: every carousel
// round of the lead goes out at its time, none is lost to the head.
func TestLongWakeHeadKeepsRounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		w := &rtWaiter{}
		rec := &edgetest.Sender{True: clock.True}
		var firstInRT, firstInThen []bool
		s := edge.SenderFunc(func(typ wire.Type, dgs [][]byte) (int, error) {
			if typ == wire.TypeRelease {
				firstInRT, firstInThen = append(firstInRT, w.inRT.Load()), append(firstInThen, w.inThen.Load())
			}
			return rec.Send(typ, dgs)
		})
		lead := 2 * time.Second
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{s}, Repeat: 2, Spacing: time.Millisecond,
			Lead: lead, Waiter: w, WakeHead: time.Second})
		at := clock.True() + int64(3*time.Second)
		b := f.bundle(t, 1, 1, at)
		if err := e.Add(b); err != nil {
			t.Fatal(err)
		}
		start(t, e)
		sleepUntil(at + 100*ms)
		if !slices.Equal(firstInRT, []bool{true, false}) || !slices.Equal(firstInThen, []bool{true, false}) {
			t.Errorf("RELEASE copies inside Realtime %v, inside then %v; want the first in both", firstInRT, firstInThen)
		}
		var rounds []int64
		for _, d := range rec.Of(wire.TypeAnnounce) {
			if len(rounds) == 0 || rounds[len(rounds)-1] != d.At {
				rounds = append(rounds, d.At)
			}
		}
		// Spread over the lead as ever: not bunched when the head began.
		if n := len(rec.Of(wire.TypeAnnounce)); len(rounds) != edge.DefaultRounds || n != edge.DefaultRounds*len(b.Shards) {
			t.Fatalf("%d ANNOUNCE datagrams at %d instants, want %d rounds of %d", n, len(rounds), edge.DefaultRounds, len(b.Shards))
		}
		for i := 1; i < len(rounds); i++ {
			if gap := time.Duration(rounds[i] - rounds[i-1]); gap < lead/edge.DefaultRounds-100*time.Millisecond {
				t.Errorf("rounds %d and %d only %v apart: %v", i-1, i, gap, rounds)
			}
		}
	})
}
