package ptp

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tai0 is an arbitrary TAI instant.
const tai0 = int64(1_790_000_037_000_000_000)

// manual is a true-time source moved only by the test.
type manual struct{ t atomic.Int64 }

func (m *manual) now() int64              { return m.t.Load() }
func (m *manual) set(v int64)             { m.t.Store(v) }
func (m *manual) advance(d time.Duration) { m.t.Add(int64(d)) }

func mustRead(t *testing.T, c Clock) Reading {
	t.Helper()
	r, err := c.Now()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSimDistortions(t *testing.T) {
	ms := int64(time.Millisecond)
	m := &manual{}
	m.set(tai0)
	sim := NewSim(WithTrueTime(m.now),
		WithOffset(250*time.Microsecond),
		WithDrift(100), // +100 µs per second of true time
		WithStep(tai0+2000*ms, 5*time.Millisecond),
		WithStep(tai0+3000*ms, -8*time.Millisecond),
		WithUncertainty(time.Millisecond, 0))
	for _, tc := range []struct {
		at   int64 // true time, relative to tai0
		want int64 // clock mid, relative to true time
	}{
		{0, 250_000},
		{1000 * ms, 350_000},
		{2000*ms - 1, 450_000},                 // just before the forward step
		{2000 * ms, 450_000 + 5_000_000},       // step applies at its instant
		{3000 * ms, 550_000 + 5_000_000 - 8e6}, // backward step
	} {
		m.set(tai0 + tc.at)
		r := mustRead(t, sim)
		if got := r.Mid() - m.now(); got != tc.want {
			t.Errorf("true+%dms: clock−true = %d, want %d", tc.at/ms, got, tc.want)
		}
		if r.Uncertainty() != time.Millisecond || r.State != StateSynchronized {
			t.Errorf("true+%dms: ±%v %v, want ±1ms synchronized", tc.at/ms, r.Uncertainty(), r.State)
		}
	}
	if sim.True() != m.now() {
		t.Errorf("True() = %d, want the source's %d", sim.True(), m.now())
	}
}

func TestSimJitterBoundedAndSeeded(t *testing.T) {
	m := &manual{}
	m.set(tai0)
	const j = 200 * time.Microsecond
	a := NewSim(WithTrueTime(m.now), WithJitter(j, 42))
	b := NewSim(WithTrueTime(m.now), WithJitter(j, 42))
	c := NewSim(WithTrueTime(m.now), WithJitter(j, 43))
	differs, spread := false, map[bool]bool{}
	for range 2000 {
		ra, rb, rc := mustRead(t, a), mustRead(t, b), mustRead(t, c)
		d := ra.Mid() - tai0
		if d < -int64(j) || d > int64(j) {
			t.Fatalf("jitter %d outside ±%v", d, j)
		}
		if ra != rb {
			t.Fatalf("same seed diverged: %+v vs %+v", ra, rb)
		}
		differs = differs || ra != rc
		spread[d > 0] = true
	}
	if !differs {
		t.Error("different seeds produced identical sequences")
	}
	if len(spread) != 2 {
		t.Error("jitter never took both signs")
	}
}

func TestSimStatesAndHoldoverGrowth(t *testing.T) {
	s := int64(time.Second)
	m := &manual{}
	m.set(tai0)
	sim := NewSim(WithTrueTime(m.now),
		WithUncertainty(100*time.Microsecond, 50),
		WithStateAt(tai0+10*s, StateHoldover, "gm lost"),
		WithStateAt(tai0+40*s, StateUnsynchronized, ""),
		WithStateAt(tai0+50*s, StateSynchronized, "gm back"))
	for _, tc := range []struct {
		at     int64
		state  State
		unc    time.Duration
		reason string
	}{
		{5 * s, StateSynchronized, 100 * time.Microsecond, "sim: synchronized"},
		{10 * s, StateHoldover, 100 * time.Microsecond, "gm lost"},
		{30 * s, StateHoldover, 1100 * time.Microsecond, "gm lost"}, // 20 s × 50 ppm
		{45 * s, StateUnsynchronized, 1850 * time.Microsecond, "sim: unsynchronized"},
		{50 * s, StateSynchronized, 100 * time.Microsecond, "gm back"},
	} {
		m.set(tai0 + tc.at)
		r := mustRead(t, sim)
		if r.State != tc.state || r.Uncertainty() != tc.unc || r.Reason != tc.reason {
			t.Errorf("true+%ds: %v ±%v %q, want %v ±%v %q", tc.at/s, r.State, r.Uncertainty(), r.Reason,
				tc.state, tc.unc, tc.reason)
		}
	}
	// Runtime changes act at the current true time.
	sim.SetState(StateHoldover, "cable pulled")
	m.advance(2 * time.Second)
	sim.Step(-time.Millisecond)
	r := mustRead(t, sim)
	if r.State != StateHoldover || r.Reason != "cable pulled" || r.Uncertainty() != 200*time.Microsecond {
		t.Errorf("after SetState: %v ±%v %q", r.State, r.Uncertainty(), r.Reason)
	}
	if d := r.Mid() - m.now(); d != -int64(time.Millisecond) {
		t.Errorf("after Step(−1ms): clock−true = %d", d)
	}
}

func TestSimInvalidOptions(t *testing.T) {
	for name, o := range map[string]SimOption{
		"nil source":       WithTrueTime(nil),
		"negative jitter":  WithJitter(-1, 0),
		"negative base":    WithUncertainty(-1, 0),
		"negative growth":  WithUncertainty(0, -5),
		"drift beyond 1e6": WithDrift(2e6),
	} {
		if _, err := NewSim(o).Now(); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: Now err = %v, want ErrInvalidOption", name, err)
		}
	}
}

// TestSimConcurrent is for the race detector: reads, steps and state
// changes from several goroutines.
func TestSimConcurrent(t *testing.T) {
	sim := NewSim(WithJitter(time.Microsecond, 1), WithUncertainty(10*time.Microsecond, 1))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				if _, err := sim.Now(); err != nil {
					t.Error(err)
					return
				}
				switch {
				case g == 0 && i%50 == 0:
					sim.Step(time.Microsecond)
				case g == 1 && i%100 == 0:
					sim.SetState(StateHoldover, "flap")
				case g == 2 && i%100 == 50:
					sim.SetState(StateSynchronized, "flap")
				}
			}
		})
	}
	wg.Wait()
}
