package ptp

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// guardRun reads g every step of true time for d and checks that every
// synchronized or holdover Reading's Earliest is at or before true time:
// the property the guard exists for. It returns the last Reading and the
// most the guard's Earliest trailed true time.
func guardRun(t *testing.T, m *manual, g *Guard, d, step time.Duration) (last Reading, trail time.Duration) {
	t.Helper()
	for end := m.now() + int64(d); m.now() < end; m.advance(step) {
		r := mustRead(t, g)
		if r.State == StateUnsynchronized {
			last = r
			continue
		}
		if r.Earliest > m.now() {
			t.Fatalf("at +%v the guard's earliest is %v after true time (%v: %s)", time.Duration(m.now()-tai0), time.Duration(r.Earliest-m.now()), r.State, r.Reason)
		}
		trail = max(trail, time.Duration(m.now()-r.Earliest))
		last = r
	}
	return last, trail
}

func newGuarded(m *manual, log *slog.Logger, opts ...SimOption) (*Sim, *Guard) {
	sim := NewSim(append([]SimOption{WithTrueTime(m.now)}, opts...)...)
	return sim, NewGuard(sim, WithOscillator(m.now, DefaultOscillatorPPM), WithGuardLogger(log))
}

func TestGuardHonestClock(t *testing.T) {
	m := &manual{}
	m.set(tai0)
	// An honest clock: offset and jitter inside its ±100 µs bound.
	_, g := newGuarded(m, nil, WithOffset(60*time.Microsecond), WithJitter(30*time.Microsecond, 1), WithUncertainty(100*time.Microsecond, 0))
	last, trail := guardRun(t, m, g, 30*time.Second, 7*time.Millisecond)
	if last.State != StateSynchronized || g.fault != nil {
		t.Fatalf("honest clock flagged: %v %s", last.State, last.Reason)
	}
	// The guard's price: the clock's own bound plus ppm of the window.
	if limit := 190*time.Microsecond + time.Duration(DefaultOscillatorPPM*float64(DefaultGuardWindow)/1e6) + 30*time.Microsecond; trail > limit {
		t.Errorf("earliest trails true time by up to %v, want ≤ %v", trail, limit)
	}
}

func TestGuardOscillatorWithinTolerance(t *testing.T) {
	m := &manual{}
	m.set(tai0)
	sim := NewSim(WithTrueTime(m.now), WithUncertainty(100*time.Microsecond, 0))
	// The oscillator runs 90 ppm fast: inside the 100 ppm it is allowed.
	fast := func() int64 { return tai0 + int64(float64(m.now()-tai0)*(1+90e-6)) }
	g := NewGuard(sim, WithOscillator(fast, 100))
	if last, _ := guardRun(t, m, g, time.Minute, 13*time.Millisecond); last.State != StateSynchronized {
		t.Fatalf("clock flagged against an oscillator within tolerance: %s", last.Reason)
	}
}

func TestGuardStep(t *testing.T) {
	for _, by := range []time.Duration{10 * time.Millisecond, -10 * time.Millisecond, 500 * time.Microsecond} {
		t.Run(by.String(), func(t *testing.T) {
			m := &manual{}
			m.set(tai0)
			var logs bytes.Buffer
			sim, g := newGuarded(m, slog.New(slog.NewTextHandler(&logs, nil)), WithUncertainty(100*time.Microsecond, 0))
			guardRun(t, m, g, 5*time.Second, 10*time.Millisecond)
			sim.Step(by)
			last, _ := guardRun(t, m, g, 10*time.Second, 10*time.Millisecond)
			if last.State != StateHoldover || !strings.Contains(last.Reason, "against the local oscillator") {
				t.Fatalf("after a %v step: %v %q", by, last.State, last.Reason)
			}
			if !strings.Contains(logs.String(), "holding over on the oscillator") {
				t.Errorf("the fault was not logged: %s", logs.String())
			}
			// A clock that jumped ahead releases by the oscillator: not
			// much later than true time, and never before it (guardRun).
			if lag := time.Duration(m.now() - int64(10*time.Millisecond) - last.Earliest); by > 0 && lag > time.Millisecond+time.Duration(DefaultOscillatorPPM*12e3) {
				t.Errorf("holding over, earliest trails true time by %v: %+v", lag, last)
			}
			// The holdover runs out: then the guard refuses.
			m.advance(DefaultGuardHoldover)
			if r := mustRead(t, g); r.State != StateUnsynchronized || !strings.Contains(r.Reason, "holdover ran out") {
				t.Fatalf("after the holdover: %v %q", r.State, r.Reason)
			}
		})
	}
}

func TestGuardStepBackClears(t *testing.T) {
	m := &manual{}
	m.set(tai0)
	sim, g := newGuarded(m, nil, WithUncertainty(100*time.Microsecond, 0))
	guardRun(t, m, g, 3*time.Second, 10*time.Millisecond)
	sim.Step(5 * time.Millisecond)
	if last, _ := guardRun(t, m, g, time.Second, 10*time.Millisecond); last.State != StateHoldover {
		t.Fatalf("step not caught: %v", last.State)
	}
	sim.Step(-5 * time.Millisecond)
	if last, _ := guardRun(t, m, g, time.Second, 10*time.Millisecond); last.State != StateSynchronized {
		t.Fatalf("clock back in agreement, still %v: %s", last.State, last.Reason)
	}
}

func TestGuardDrift(t *testing.T) {
	// 1,000 ppm on a clock that claims ±100 µs: it is 1 ms off after one
	// second. The guard catches it and is never early meanwhile.
	for _, ppm := range []float64{1000, -1000, 400} {
		m := &manual{}
		m.set(tai0)
		_, g := newGuarded(m, nil, WithDrift(ppm), WithUncertainty(100*time.Microsecond, 0))
		last, _ := guardRun(t, m, g, 20*time.Second, 5*time.Millisecond)
		if last.State != StateHoldover {
			t.Errorf("%v ppm drift not caught: %v %s", ppm, last.State, last.Reason)
		}
	}
}

func TestGuardSyncLoss(t *testing.T) {
	m := &manual{}
	m.set(tai0)
	sim, g := newGuarded(m, nil, WithUncertainty(100*time.Microsecond, 0))
	guardRun(t, m, g, time.Second, 10*time.Millisecond)
	sim.Step(20 * time.Millisecond)
	guardRun(t, m, g, time.Second, 10*time.Millisecond)
	sim.SetState(StateUnsynchronized, "servo unlocked")
	if r := mustRead(t, g); r.State != StateUnsynchronized || r.Reason != "servo unlocked" {
		t.Fatalf("sync loss not passed through: %v %q", r.State, r.Reason)
	}
	// The servo relocks (stepping the clock back into line): trusted afresh.
	sim.Step(-20 * time.Millisecond)
	sim.SetState(StateSynchronized, "servo locked")
	if last, _ := guardRun(t, m, g, 5*time.Second, 10*time.Millisecond); last.State != StateSynchronized {
		t.Fatalf("after resync: %v %s", last.State, last.Reason)
	}
}

func TestGuardOptions(t *testing.T) {
	for name, opt := range map[string]GuardOption{
		"nil oscillator":    WithOscillator(nil, 10),
		"negative ppm":      WithOscillator(func() int64 { return 0 }, -1),
		"zero window":       WithGuardWindow(0),
		"negative holdover": WithGuardHoldover(-time.Second),
	} {
		if _, err := NewGuard(NewSim(), opt).Now(); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: err %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := NewGuard(nil).Now(); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("nil clock: %v", err)
	}
	if r := mustRead(t, NewGuard(NewSim(WithUncertainty(time.Millisecond, 0)))); r.State != StateSynchronized {
		t.Errorf("default guard on a sim: %v %s", r.State, r.Reason)
	}
}
