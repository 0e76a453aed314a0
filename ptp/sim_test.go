package ptp

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestSimDistortions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := int64(time.Millisecond)
		start := SystemTAI()
		sim := NewSim(
			WithOffset(250*time.Microsecond),
			WithDrift(100), // +100 µs per second of true time
			WithStep(start+2000*ms, 5*time.Millisecond),
			WithStep(start+3000*ms, -8*time.Millisecond),
			WithUncertainty(time.Millisecond, 0))
		for _, tc := range []struct {
			at   int64 // true time, relative to start
			want int64 // clock mid, relative to true time
		}{
			{0, 250_000},
			{1000 * ms, 350_000},
			{2000*ms - 1, 450_000},                 // just before the forward step
			{2000 * ms, 450_000 + 5_000_000},       // step applies at its instant
			{3000 * ms, 550_000 + 5_000_000 - 8e6}, // backward step
		} {
			sleepUntil(start + tc.at)
			r := mustRead(t, sim)
			if got := r.Mid() - SystemTAI(); got != tc.want {
				t.Errorf("true+%dms: clock−true = %d, want %d", tc.at/ms, got, tc.want)
			}
			if r.Uncertainty() != time.Millisecond || r.State != StateSynchronized {
				t.Errorf("true+%dms: ±%v %v, want ±1ms synchronized", tc.at/ms, r.Uncertainty(), r.State)
			}
		}
		if now := SystemTAI(); sim.True() != now {
			t.Errorf("True() = %d, want the source's %d", sim.True(), now)
		}
	})
}

func TestSimTrueTimeSource(t *testing.T) {
	// WithTrueTime replaces SystemTAI: the clock follows its source only.
	synctest.Test(t, func(t *testing.T) {
		var src int64 = 1_000_000
		sim := NewSim(WithTrueTime(func() int64 { return src }), WithOffset(time.Microsecond))
		time.Sleep(time.Hour)
		if r := mustRead(t, sim); r.Mid() != 1_001_000 {
			t.Errorf("mid %d, want 1001000 (source + offset, virtual time ignored)", r.Mid())
		}
		src += 5
		if got := sim.True(); got != 1_000_005 {
			t.Errorf("True() = %d, want 1000005", got)
		}
	})
}

func TestSimJitterBoundedAndSeeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := SystemTAI() // time stands still: only the jitter moves
		const j = 200 * time.Microsecond
		a := NewSim(WithJitter(j, 42))
		b := NewSim(WithJitter(j, 42))
		c := NewSim(WithJitter(j, 43))
		differs, spread := false, map[bool]bool{}
		for range 2000 {
			ra, rb, rc := mustRead(t, a), mustRead(t, b), mustRead(t, c)
			d := ra.Mid() - start
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
	})
}

func TestSimStatesAndHoldoverGrowth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := int64(time.Second)
		start := SystemTAI()
		sim := NewSim(
			WithUncertainty(100*time.Microsecond, 50),
			WithStateAt(start+10*s, StateHoldover, "gm lost"),
			WithStateAt(start+40*s, StateUnsynchronized, ""),
			WithStateAt(start+50*s, StateSynchronized, "gm back"))
		for _, tc := range []struct {
			at     int64
			state  State
			unc    time.Duration
			reason string
		}{
			{5 * s, StateSynchronized, 100 * time.Microsecond, "sim: synchronized"},
			{10*s - 1, StateSynchronized, 100 * time.Microsecond, "sim: synchronized"},
			{10 * s, StateHoldover, 100 * time.Microsecond, "gm lost"},
			{30 * s, StateHoldover, 1100 * time.Microsecond, "gm lost"}, // 20 s × 50 ppm
			{45 * s, StateUnsynchronized, 1850 * time.Microsecond, "sim: unsynchronized"},
			{50 * s, StateSynchronized, 100 * time.Microsecond, "gm back"},
		} {
			sleepUntil(start + tc.at)
			r := mustRead(t, sim)
			if r.State != tc.state || r.Uncertainty() != tc.unc || r.Reason != tc.reason {
				t.Errorf("true+%v: %v ±%v %q, want %v ±%v %q", time.Duration(tc.at), r.State, r.Uncertainty(), r.Reason,
					tc.state, tc.unc, tc.reason)
			}
		}
		// Runtime changes act at the current true time.
		sim.SetState(StateHoldover, "cable pulled")
		time.Sleep(2 * time.Second)
		sim.Step(-time.Millisecond)
		r := mustRead(t, sim)
		if r.State != StateHoldover || r.Reason != "cable pulled" || r.Uncertainty() != 200*time.Microsecond {
			t.Errorf("after SetState: %v ±%v %q", r.State, r.Uncertainty(), r.Reason)
		}
		if d := r.Mid() - SystemTAI(); d != -int64(time.Millisecond) {
			t.Errorf("after Step(−1ms): clock−true = %d", d)
		}
	})
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
// changes from several goroutines while virtual time moves.
func TestSimConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
					case g == 3:
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
	})
}
