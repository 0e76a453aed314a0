package ptp

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The guard tests run in virtual time: true time is the bubble's clock
// (SystemTAI), the guard's oscillator is virtualOscillator (perfect unless a
// test skews it), and a Sim over that true time plays the clock.

// guardRun reads g every step of true time for d and checks that every
// synchronized or holdover Reading's Earliest is at or before true time:
// the property the guard exists for. It returns the last Reading, the true
// time it was read at, and the most the guard's Earliest trailed true time.
func guardRun(t *testing.T, g *Guard, d, step time.Duration) (last Reading, lastAt int64, trail time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(step) {
		r := mustRead(t, g)
		now := SystemTAI()
		last, lastAt = r, now
		if r.State == StateUnsynchronized {
			continue
		}
		if r.Earliest > now {
			t.Fatalf("at %v the guard's earliest is %v after true time (%v: %s)", time.Now().Format(time.StampMicro), time.Duration(r.Earliest-now), r.State, r.Reason)
		}
		trail = max(trail, time.Duration(now-r.Earliest))
	}
	return last, lastAt, trail
}

func newGuarded(log *slog.Logger, opts ...SimOption) (*Sim, *Guard) {
	sim := NewSim(opts...)
	return sim, NewGuard(sim, WithOscillator(virtualOscillator(), DefaultOscillatorPPM), WithGuardLogger(log))
}

func TestGuardHonestClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// An honest clock: offset and jitter inside its ±100 µs bound.
		_, g := newGuarded(nil, WithOffset(60*time.Microsecond), WithJitter(30*time.Microsecond, 1), WithUncertainty(100*time.Microsecond, 0))
		last, _, trail := guardRun(t, g, 30*time.Second, 7*time.Millisecond)
		if last.State != StateSynchronized || g.fault != nil {
			t.Fatalf("honest clock flagged: %v %s", last.State, last.Reason)
		}
		// The guard's price: the clock's own bound plus ppm of the window.
		if limit := 190*time.Microsecond + time.Duration(DefaultOscillatorPPM*float64(DefaultGuardWindow)/1e6) + 30*time.Microsecond; trail > limit {
			t.Errorf("earliest trails true time by up to %v, want ≤ %v", trail, limit)
		}
	})
}

func TestGuardOscillatorWithinTolerance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSim(WithUncertainty(100*time.Microsecond, 0))
		// The oscillator runs 90 ppm fast: inside the 100 ppm it is allowed.
		osc := virtualOscillator()
		fast := func() int64 { return int64(float64(osc()) * (1 + 90e-6)) }
		g := NewGuard(sim, WithOscillator(fast, 100))
		if last, _, _ := guardRun(t, g, time.Minute, 13*time.Millisecond); last.State != StateSynchronized {
			t.Fatalf("clock flagged against an oscillator within tolerance: %s", last.Reason)
		}
	})
}

func TestGuardStep(t *testing.T) {
	for _, by := range []time.Duration{10 * time.Millisecond, -10 * time.Millisecond, 500 * time.Microsecond} {
		t.Run(by.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs bytes.Buffer
				sim, g := newGuarded(slog.New(slog.NewTextHandler(&logs, nil)), WithUncertainty(100*time.Microsecond, 0))
				guardRun(t, g, 5*time.Second, 10*time.Millisecond)
				sim.Step(by)
				if r := mustRead(t, sim); by > 0 && r.Earliest <= SystemTAI() {
					t.Fatalf("unguarded, the stepped clock is not early (%+v): the never-early check would be vacuous", r)
				}
				// Each step leaves the ±100 µs interval beyond what even
				// the oldest anchor allows (200 µs), so the very next read
				// catches it.
				caught := time.Now()
				if r := mustRead(t, g); r.State != StateHoldover || !strings.Contains(r.Reason, "against the local oscillator") {
					t.Fatalf("the read after a %v step: %v %q", by, r.State, r.Reason)
				}
				if !strings.Contains(logs.String(), "holding over on the oscillator") {
					t.Errorf("the fault was not logged: %s", logs.String())
				}
				last, lastAt, _ := guardRun(t, g, 10*time.Second, 10*time.Millisecond)
				if last.State != StateHoldover {
					t.Fatalf("10 s after a %v step: %v %q", by, last.State, last.Reason)
				}
				// A clock that jumped ahead releases by the oscillator: not
				// much later than true time, and never before it (guardRun).
				if lag := time.Duration(lastAt - last.Earliest); by > 0 && lag > time.Millisecond+time.Duration(DefaultOscillatorPPM*12e3) {
					t.Errorf("holding over, earliest trails true time by %v: %+v", lag, last)
				}
				// The holdover runs out exactly DefaultGuardHoldover after
				// the catch: then the guard refuses.
				time.Sleep(DefaultGuardHoldover - time.Since(caught))
				if r := mustRead(t, g); r.State != StateHoldover {
					t.Fatalf("at the end of the holdover: %v %q, want still holding over", r.State, r.Reason)
				}
				time.Sleep(time.Nanosecond)
				r := mustRead(t, g)
				if by < 0 {
					// Behind and steady all along: trusting it can
					// only make releases late, so the guard does, and
					// says so.
					if r.State != StateSynchronized || !strings.Contains(logs.String(), "trusting it again") {
						t.Fatalf("after the holdover on a clock %v behind: %v %q", -by, r.State, r.Reason)
					}
					return
				}
				if r.State != StateUnsynchronized || !strings.Contains(r.Reason, "holdover ran out") {
					t.Fatalf("after the holdover: %v %q", r.State, r.Reason)
				}
				if !strings.Contains(logs.String(), "refusing releases") {
					t.Errorf("the end of the holdover was not logged: %s", logs.String())
				}
			})
		})
	}
}

func TestGuardStepBackClears(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, g := newGuarded(nil, WithUncertainty(100*time.Microsecond, 0))
		guardRun(t, g, 3*time.Second, 10*time.Millisecond)
		sim.Step(5 * time.Millisecond)
		if last, _, _ := guardRun(t, g, time.Second, 10*time.Millisecond); last.State != StateHoldover {
			t.Fatalf("step not caught: %v", last.State)
		}
		sim.Step(-5 * time.Millisecond)
		// Undone, the step clears at the next read.
		if r := mustRead(t, g); r.State != StateSynchronized {
			t.Fatalf("clock back in agreement, still %v: %s", r.State, r.Reason)
		}
		if last, _, _ := guardRun(t, g, time.Second, 10*time.Millisecond); last.State != StateSynchronized {
			t.Fatalf("a second after the step was undone: %v: %s", last.State, last.Reason)
		}
	})
}

func TestGuardDrift(t *testing.T) {
	// 1,000 ppm on a clock that claims ±100 µs: it is 1 ms off after one
	// second. The guard catches it and is never early meanwhile.
	for _, ppm := range []float64{1000, -1000, 400} {
		synctest.Test(t, func(t *testing.T) {
			_, g := newGuarded(nil, WithDrift(ppm), WithUncertainty(100*time.Microsecond, 0))
			last, _, _ := guardRun(t, g, 20*time.Second, 5*time.Millisecond)
			if last.State != StateHoldover {
				t.Errorf("%v ppm drift not caught: %v %s", ppm, last.State, last.Reason)
			}
		})
	}
}

func TestGuardSyncLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, g := newGuarded(nil, WithUncertainty(100*time.Microsecond, 0))
		guardRun(t, g, time.Second, 10*time.Millisecond)
		sim.Step(20 * time.Millisecond)
		guardRun(t, g, time.Second, 10*time.Millisecond)
		sim.SetState(StateUnsynchronized, "servo unlocked")
		if r := mustRead(t, g); r.State != StateUnsynchronized || r.Reason != "servo unlocked" {
			t.Fatalf("sync loss not passed through: %v %q", r.State, r.Reason)
		}
		// The servo relocks (stepping the clock back into line): trusted afresh.
		sim.Step(-20 * time.Millisecond)
		sim.SetState(StateSynchronized, "servo locked")
		if last, _, _ := guardRun(t, g, 5*time.Second, 10*time.Millisecond); last.State != StateSynchronized {
			t.Fatalf("after resync: %v %s", last.State, last.Reason)
		}
	})
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
	// The default oscillator is the real CLOCK_MONOTONIC_RAW, so this one
	// read is outside virtual time; a first read only takes an anchor.
	if r := mustRead(t, NewGuard(NewSim(WithUncertainty(time.Millisecond, 0)))); r.State != StateSynchronized {
		t.Errorf("default guard on a sim: %v %s", r.State, r.Reason)
	}
}

// preempted makes some reads of a clock lose the CPU for d, before or
// after the read itself, as a busy machine does to the thread between the
// guard's reads of the clock and of the oscillator.
type preempted struct {
	c     Clock
	d     func(n int) (before, after time.Duration)
	reads int
}

func (p *preempted) Now() (Reading, error) {
	p.reads++
	before, after := p.d(p.reads)
	time.Sleep(before)
	r, err := p.c.Now()
	time.Sleep(after)
	return r, err
}

// TestGuardPreemption: an honest ±100 µs clock read by a thread that is
// pre-empted between the clock read and the oscillator reads — 250 µs on
// the very first read, then up to 11 ms on one read in seven, before or
// after the clock read — is never caught out: the bracket around each read
// says how long it took, and a wide one is read again.
func TestGuardPreemption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		sim := NewSim(WithOffset(60*time.Microsecond), WithJitter(30*time.Microsecond, 7), WithUncertainty(100*time.Microsecond, 0))
		clock := &preempted{c: sim, d: func(n int) (before, after time.Duration) {
			switch {
			case n == 1:
				return 0, 250 * time.Microsecond
			case n%7 == 0:
				d := time.Duration(n%11+1) * time.Millisecond
				if n%2 == 0 {
					return d, 0
				}
				return 0, d
			}
			return 0, 0
		}}
		g := NewGuard(clock, WithOscillator(virtualOscillator(), DefaultOscillatorPPM), WithGuardLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		last, _, _ := guardRun(t, g, 2*DefaultGuardHoldover, 3*time.Millisecond)
		if last.State != StateSynchronized || g.fault != nil || strings.Contains(logs.String(), "level=ERROR") {
			t.Fatalf("an honest clock under pre-emption: %v %q\n%s", last.State, last.Reason, logs.String())
		}
		if clock.reads < 1000 {
			t.Fatalf("only %d reads", clock.reads)
		}
	})
}

// TestGuardPreemptedStillCatches: the same pre-emption does not hide a
// step: the wide brackets are read again, and the narrow one catches it.
func TestGuardPreemptedStillCatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := NewSim(WithUncertainty(100*time.Microsecond, 0))
		clock := &preempted{c: sim, d: func(n int) (before, after time.Duration) {
			if n%3 == 0 {
				return 0, 5 * time.Millisecond
			}
			return 0, 0
		}}
		g := NewGuard(clock, WithOscillator(virtualOscillator(), DefaultOscillatorPPM))
		guardRun(t, g, 3*time.Second, 10*time.Millisecond)
		sim.Step(2 * time.Millisecond)
		if last, _, _ := guardRun(t, g, 100*time.Millisecond, 10*time.Millisecond); last.State != StateHoldover {
			t.Fatalf("a 2 ms step under pre-emption: %v %q", last.State, last.Reason)
		}
	})
}

// TestGuardBadFirstAnchor: the first read, with nothing to check it
// against, catches the clock 5 ms ahead just before its daemon steps it
// back. The guard holds over (it cannot tell which read was wrong), but
// the clock fell behind the anchor and keeps time, so when the holdover
// runs out it is trusted again instead of being refused for good.
func TestGuardBadFirstAnchor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		sim, g := newGuarded(slog.New(slog.NewTextHandler(&logs, nil)), WithOffset(5*time.Millisecond), WithUncertainty(100*time.Microsecond, 0))
		mustRead(t, g)
		sim.Step(-5 * time.Millisecond)
		if r := mustRead(t, g); r.State != StateHoldover {
			t.Fatalf("the corrected clock against the bad anchor: %v %q", r.State, r.Reason)
		}
		last, _, _ := guardRun(t, g, DefaultGuardHoldover+time.Second, 10*time.Millisecond)
		if last.State != StateSynchronized || !strings.Contains(logs.String(), "trusting it again") {
			t.Fatalf("a holdover after a bad first anchor: %v %q\n%s", last.State, last.Reason, logs.String())
		}
	})
}
