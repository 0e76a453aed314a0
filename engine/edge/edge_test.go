package edge_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/wait"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// sent is one datagram as the fake sender saw it.
type sent struct {
	at     int64 // true time of the send
	typ    wire.Type
	stream uint32
	period uint64
	dg     []byte
}

// recorder is an in-memory Sender that stamps each datagram with the true
// time of a Sim, so tests compare sends with what really happened.
type recorder struct {
	clock *ptp.Sim
	fail  bool
	mu    sync.Mutex
	log   []sent
}

func (r *recorder) Send(_ wire.Type, dgs [][]byte) (int, error) {
	at := r.clock.True()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("link down")
	}
	for _, d := range dgs {
		h, err := wire.Peek(d)
		if err != nil {
			panic(err)
		}
		r.log = append(r.log, sent{at: at, typ: h.Type, stream: h.Stream, period: h.Period, dg: append([]byte(nil), d...)})
	}
	return len(dgs), nil
}

func (r *recorder) sends() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.log...)
}

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

// run starts e and returns a stop function that waits for Run to return.
func run(t *testing.T, e *edge.Edge) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestNeverEarlyAndCarousel runs several periods on clocks that read
// ahead of, behind and around true time, and checks against true time
// that no RELEASE went out before its releaseAt, that every ANNOUNCE
// round went out before it, and that each period's shards were sent Rounds
// times.
func TestNeverEarlyAndCarousel(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name  string
		clock *ptp.Sim
	}{
		// Each clock errs by less than its stated bound, as a sound clock does.
		{"ahead", ptp.NewSim(ptp.WithOffset(3*time.Millisecond), ptp.WithUncertainty(4*time.Millisecond, 0))},
		{"behind", ptp.NewSim(ptp.WithOffset(-3*time.Millisecond), ptp.WithUncertainty(4*time.Millisecond, 0))},
		{"jitter", ptp.NewSim(ptp.WithJitter(2*time.Millisecond, 7), ptp.WithUncertainty(2*time.Millisecond, 0))},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{clock: c.clock}
			const rounds, repeat = 3, 2
			e, err := edge.New(edge.Config{
				ID: 9, Clock: c.clock, Trusted: f.ring, Senders: []edge.Sender{rec},
				Lead: 200 * time.Millisecond, Rounds: rounds, Repeat: repeat, Spacing: time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			start := c.clock.True()
			const periods = 3
			want := map[uint64]int64{}
			for p := uint64(1); p <= periods; p++ {
				at := start + 50*int64(time.Millisecond) + int64(p)*200*int64(time.Millisecond)
				want[p] = at
				if err := e.Add(f.bundle(t, 5, p, at)); err != nil {
					t.Fatal(err)
				}
			}
			stop := run(t, e)
			wait.For(t, 5*time.Second, "releases", func() bool { return e.Stats().Released == periods })
			stop()

			shards := map[uint64]map[int64]int{} // period → send batch time → datagrams
			releases := map[uint64]int{}
			for _, s := range rec.sends() {
				if s.stream != 5 {
					t.Fatalf("datagram for stream %d", s.stream)
				}
				switch s.typ {
				case wire.TypeRelease:
					releases[s.period]++
					if s.at < want[s.period] {
						t.Errorf("period %d: RELEASE sent %v before releaseAt", s.period, time.Duration(want[s.period]-s.at))
					}
					var r wire.Release
					if err := r.Decode(s.dg); err != nil {
						t.Fatal(err)
					}
					if r.EdgeID != 9 || r.ReleaseAt != want[s.period] || r.SentAt < r.ReleaseAt {
						t.Errorf("period %d: RELEASE edge %d releaseAt %d sentAt %d", s.period, r.EdgeID, r.ReleaseAt, r.SentAt)
					}
				case wire.TypeAnnounce:
					if s.at >= want[s.period] {
						t.Errorf("period %d: ANNOUNCE sent %v after releaseAt", s.period, time.Duration(s.at-want[s.period]))
					}
					if shards[s.period] == nil {
						shards[s.period] = map[int64]int{}
					}
					shards[s.period][s.at]++
				}
			}
			for p := uint64(1); p <= periods; p++ {
				if releases[p] != repeat {
					t.Errorf("period %d: %d RELEASE copies, want %d", p, releases[p], repeat)
				}
				total := 0
				for _, n := range shards[p] {
					total += n
				}
				if k := len(f.bundle(t, 5, p, want[p]).Shards); total != rounds*k {
					t.Errorf("period %d: %d ANNOUNCE datagrams, want %d rounds of %d", p, total, rounds, k)
				}
			}
			st := e.Stats()
			if st.Rounds != periods*rounds || st.ReleaseCopies != periods*repeat || st.SendErrors != 0 || st.Holds != 0 {
				t.Errorf("stats %+v", st)
			}
			if got := e.Released(5); len(got) != periods || got[0].Period != 1 || got[periods-1].Period != periods {
				t.Errorf("released history %v", got)
			}
		})
	}
}

// TestUnsynchronizedHolds checks that an edge whose clock cannot vouch for
// the instant sends nothing at it, counts the holds, and releases once the
// clock recovers — late, never early.
func TestUnsynchronizedHolds(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim(ptp.WithUncertainty(time.Millisecond, 0))
	clock.SetState(ptp.StateUnsynchronized, "test: no PTP master")
	rec := &recorder{clock: clock}
	var reports []edge.Report
	var mu sync.Mutex
	e, err := edge.New(edge.Config{
		Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Retry: 5 * time.Millisecond,
		OnRelease: func(r edge.Report) { mu.Lock(); reports = append(reports, r); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	at := clock.True() + int64(20*time.Millisecond)
	if err := e.Add(f.bundle(t, 1, 1, at)); err != nil {
		t.Fatal(err)
	}
	run(t, e)
	wait.For(t, 5*time.Second, "holds", func() bool { return e.Stats().Holds >= 5 })
	for _, s := range rec.sends() {
		if s.typ == wire.TypeRelease {
			t.Fatal("RELEASE sent on an unsynchronized clock")
		}
	}
	clock.SetState(ptp.StateSynchronized, "test: master back")
	wait.For(t, 5*time.Second, "release", func() bool { return e.Stats().Released == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 1 || reports[0].Held < 5 || reports[0].Lateness <= 0 || reports[0].FanOut <= 0 {
		t.Fatalf("reports %+v", reports)
	}
}

// TestLateBundleReleasedAtOnce: a bundle whose instant has passed is
// released straight away (late beats never) after one carousel round.
func TestLateBundleReleasedAtOnce(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim()
	rec := &recorder{clock: clock}
	e, err := edge.New(edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Repeat: 1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, e)
	if err := e.Add(f.bundle(t, 1, 1, clock.True()-int64(time.Second))); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "release", func() bool { return e.Stats().Released == 1 })
	if st := e.Stats(); st.MaxLateness < time.Second {
		t.Errorf("max lateness %v, want ≥ 1s", st.MaxLateness)
	}
}

func TestAddRefuses(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim()
	rec := &recorder{clock: clock}
	e, err := edge.New(edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, MaxPending: 2, Keep: 1, Repeat: 1})
	if err != nil {
		t.Fatal(err)
	}
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
	e2, err := edge.New(edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Keep: 1, Repeat: 1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, e2)
	if err := e2.Add(f.bundle(t, 1, 20, clock.True())); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "release", func() bool { return e2.Stats().Released == 1 })
	if err := e2.Add(f.bundle(t, 1, 19, clock.True())); !errors.Is(err, edge.ErrStale) {
		t.Errorf("older than the kept history: %v", err)
	}
	if err := e2.Add(f.bundle(t, 1, 20, clock.True())); !errors.Is(err, edge.ErrConflict) {
		t.Errorf("released period re-added with other keys: %v", err)
	}
}

func TestConfig(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim()
	rec := &recorder{clock: clock}
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
// edge goes on (the release is still recorded, with fewer good copies).
func TestSendErrorsCounted(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim()
	bad := &recorder{clock: clock, fail: true}
	good := &recorder{clock: clock}
	e, err := edge.New(edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{bad, good}, Repeat: 2, Spacing: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, e)
	if err := e.Add(f.bundle(t, 1, 1, clock.True()+int64(30*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "release", func() bool { return e.Stats().Released == 1 })
	n := 0
	for _, s := range good.sends() {
		if s.typ == wire.TypeRelease {
			n++
		}
	}
	if st := e.Stats(); n != 2 || st.SendErrors < 2 {
		t.Errorf("good sender got %d copies; stats %+v", n, st)
	}
}
