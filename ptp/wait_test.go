package ptp

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/internal/realtime"
)

// Precise's logic is tested in virtual time through ticking clocks (every
// read costs virtual time, so its spin lets the bubble's clock move);
// TestPreciseRealClock runs its spin on the real clock and checks only that
// it is never early. Sleeper's tests are all virtual.

// recorder is a true-time source remembering the last value it returned.
// For a Sim read only by a Waiter that is the true time of the read that
// authorized the return, which is exactly what "never early" is about.
type recorder struct{ last atomic.Int64 }

func (r *recorder) now() int64 {
	v := SystemTAI()
	r.last.Store(v)
	return v
}

// alternatingSteps schedules n steps every period from start, +a then −a, so
// a clock starting at offset −a/2 alternates between −a/2 and +a/2.
func alternatingSteps(start int64, period, a time.Duration, n int) []SimOption {
	opts := []SimOption{WithOffset(-a / 2)}
	for k := range n {
		by := a
		if k%2 == 1 {
			by = -a
		}
		opts = append(opts, WithStep(start+int64(k+1)*int64(period), by))
	}
	return opts
}

// neverEarlyCases are sound clocks (every fault inside the stated bound) a
// Waiter must never release early on.
var neverEarlyCases = []struct {
	name string
	opts func(start int64) []SimOption
}{
	{"ahead within bound", func(int64) []SimOption {
		return []SimOption{WithOffset(400 * time.Microsecond), WithUncertainty(500*time.Microsecond, 0)}
	}},
	{"behind within bound", func(int64) []SimOption {
		return []SimOption{WithOffset(-400 * time.Microsecond), WithUncertainty(500*time.Microsecond, 0)}
	}},
	{"fast drift, growing holdover bound", func(start int64) []SimOption {
		return []SimOption{WithDrift(300), WithStateAt(start, StateHoldover, "test holdover"), WithUncertainty(20*time.Microsecond, 300)}
	}},
	{"slow drift, growing holdover bound", func(start int64) []SimOption {
		return []SimOption{WithDrift(-300), WithStateAt(start, StateHoldover, "test holdover"), WithUncertainty(20*time.Microsecond, 300)}
	}},
	{"jitter", func(int64) []SimOption {
		return []SimOption{WithOffset(50 * time.Microsecond), WithJitter(200*time.Microsecond, 7), WithUncertainty(250*time.Microsecond, 0)}
	}},
	{"small steps forward and backward", func(start int64) []SimOption {
		return append(alternatingSteps(start, 2500*time.Microsecond, 900*time.Microsecond, 800), WithUncertainty(450*time.Microsecond, 0))
	}},
	{"large steps forward and backward", func(start int64) []SimOption {
		return append(alternatingSteps(start, 7*time.Millisecond, 10*time.Millisecond, 300), WithUncertainty(5*time.Millisecond, 0))
	}},
	{"everything at once", func(start int64) []SimOption {
		return append(alternatingSteps(start, 3*time.Millisecond, 600*time.Microsecond, 700),
			WithDrift(100), WithJitter(50*time.Microsecond, 11), WithStateAt(start, StateHoldover, "x"),
			WithUncertainty(350*time.Microsecond, 100))
	}},
}

// checkNeverEarly makes waits waits with w on a Sim built from opts over
// SystemTAI (virtual in a bubble, real outside), read through wrap, 0.2–3 ms
// ahead or already past, and fails if any return was authorized by a read
// taken before the target in true time.
func checkNeverEarly(t *testing.T, w Waiter, opts func(int64) []SimOption, wrap func(Clock) Clock, waits int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	rec := &recorder{}
	sim := NewSim(append(opts(SystemTAI()), WithTrueTime(rec.now))...)
	c := wrap(sim)
	for i := range waits {
		target := sim.True() + int64(200*time.Microsecond) + rng.Int64N(int64(2800*time.Microsecond))
		if i%10 == 9 { // already past: must return at once, still not early
			target = sim.True() - int64(time.Millisecond)
		}
		late, err := w.WaitUntil(context.Background(), c, target)
		authorizedAt := rec.last.Load()
		if err != nil {
			t.Fatalf("wait %d: %v", i, err)
		}
		if authorizedAt < target {
			t.Fatalf("wait %d: EARLY by %v (true time %d at the authorizing read, target %d)",
				i, time.Duration(target-authorizedAt), authorizedAt, target)
		}
		if now := sim.True(); now < target {
			t.Fatalf("wait %d: true time %d after return is before target %d", i, now, target)
		}
		if late < 0 {
			t.Fatalf("wait %d: negative lateness %v", i, late)
		}
	}
}

const tick = 10 * time.Microsecond // a read's cost on a ticking clock

func tickingBy(d time.Duration) func(Clock) Clock {
	return func(c Clock) Clock { return ticking{c, d} }
}

func TestPreciseNeverEarly(t *testing.T) {
	for _, tc := range neverEarlyCases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { checkNeverEarly(t, Precise{}, tc.opts, tickingBy(tick), 50) })
		})
	}
}

func TestSleeperNeverEarly(t *testing.T) {
	for _, tc := range neverEarlyCases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				checkNeverEarly(t, Sleeper{}, tc.opts, func(c Clock) Clock { return c }, 50)
			})
		})
	}
}

// TestPreciseRealClock runs Precise's sleep and spin on the real clock. Load
// can make it late, never early, so that is all it checks.
func TestPreciseRealClock(t *testing.T) {
	realtime.Exclusive(t)
	for _, tc := range neverEarlyCases {
		t.Run(tc.name, func(t *testing.T) {
			checkNeverEarly(t, Precise{}, tc.opts, func(c Clock) Clock { return c }, 20)
		})
	}
}

// TestPreciseEndsAtTheFirstReadPast: on a steady clock, Precise sleeps and
// then spins until the very first read whose Earliest reaches the target, so
// its lateness is less than one read.
func TestPreciseEndsAtTheFirstReadPast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const u = 300 * time.Microsecond
		sim := NewSim(WithUncertainty(u, 0))
		c := ticking{sim, tick}
		for _, ahead := range []time.Duration{200 * time.Microsecond, 2 * time.Millisecond, 2*time.Millisecond + 1, 999 * time.Millisecond} {
			target := SystemTAI() + int64(ahead)
			late, err := Precise{}.WaitUntil(context.Background(), c, target)
			if err != nil {
				t.Fatal(err)
			}
			if late < 0 || late >= tick {
				t.Errorf("%v ahead: lateness %v, want in [0, %v)", ahead, late, tick)
			}
			// True time is the target plus the bound plus the lateness.
			if got := time.Duration(SystemTAI() - target); got != u+late {
				t.Errorf("%v ahead: returned %v after the target in true time, want %v", ahead, got, u+late)
			}
		}
	})
}

// TestNeverEarlyCheckCanFail shows the check above detects earliness: a Sim
// that is 3 ms ahead but claims a zero bound (a lying clock) releases early,
// and the recorder sees it.
func TestNeverEarlyCheckCanFail(t *testing.T) {
	for _, w := range []Waiter{Precise{}, Sleeper{}} {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			sim := NewSim(WithOffset(3*time.Millisecond), WithTrueTime(rec.now))
			target := sim.True() + int64(time.Millisecond)
			if _, err := w.WaitUntil(context.Background(), ticking{sim, tick}, target); err != nil {
				t.Fatal(err)
			}
			if authorizedAt := rec.last.Load(); authorizedAt >= target {
				t.Fatalf("%T: lying clock was not early (true %d ≥ target %d): the never-early check would be vacuous", w, authorizedAt, target)
			}
		})
	}
}

func TestWaitUntilRefusesUnsynchronized(t *testing.T) {
	for _, w := range []Waiter{Precise{}, Sleeper{}} {
		synctest.Test(t, func(t *testing.T) {
			start := SystemTAI()
			sim := NewSim(WithStateAt(start-1, StateUnsynchronized, "gps antenna cut"))
			for _, target := range []int64{start - int64(time.Second), start + int64(time.Hour)} {
				_, err := w.WaitUntil(context.Background(), sim, target)
				if !errors.Is(err, ErrUnsynchronized) {
					t.Fatalf("%T, target %d: err = %v, want ErrUnsynchronized", w, target, err)
				}
				if !strings.Contains(err.Error(), "gps antenna cut") {
					t.Errorf("%T: error %q does not carry the reading's reason", w, err)
				}
			}
			if d := SystemTAI() - start; d != 0 {
				t.Errorf("%T: refused after %v, want at once", w, time.Duration(d))
			}
		})
	}
}

func TestWaitUntilSyncLossMidWait(t *testing.T) {
	t.Run("while sleeping", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			start := SystemTAI()
			lossAt := start + int64(3*time.Millisecond)
			sim := NewSim(WithTrueTime(rec.now), WithStateAt(lossAt, StateUnsynchronized, "servo unlocked"))
			const maxSleep = 5 * time.Millisecond
			target := start + int64(300*time.Millisecond)
			_, err := Precise{MaxSleep: maxSleep}.WaitUntil(context.Background(), ticking{sim, tick}, target)
			if !errors.Is(err, ErrUnsynchronized) {
				t.Fatalf("err = %v, want ErrUnsynchronized", err)
			}
			// The first read after one capped sleep sees the loss.
			if at, want := rec.last.Load(), start+int64(tick+maxSleep+tick); at != want {
				t.Errorf("refusal read at true start%+v, want start%+v", time.Duration(at-start), time.Duration(want-start))
			}
		})
	})
	t.Run("while spinning", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// A frozen clock (drift −100%) keeps Precise spinning just short
			// of the target until another goroutine drops sync.
			sim := NewSim(WithDrift(-1e6))
			r := mustRead(t, sim)
			start := time.Now()
			go func() {
				// Between two reads, so that which of two goroutines
				// waking at one instant runs first cannot matter.
				time.Sleep(20*time.Millisecond - tick/2)
				sim.SetState(StateUnsynchronized, "sync lost mid-spin")
			}()
			_, err := WaitUntil(context.Background(), ticking{sim, tick}, r.Earliest+int64(time.Millisecond))
			if !errors.Is(err, ErrUnsynchronized) || !strings.Contains(err.Error(), "mid-spin") {
				t.Fatalf("err = %v, want ErrUnsynchronized with reason", err)
			}
			if d := time.Since(start); d != 20*time.Millisecond {
				t.Errorf("refused %v into the spin, want at the first read after the loss (20ms)", d)
			}
		})
	})
	t.Run("holdover keeps releasing", func(t *testing.T) {
		for _, w := range []Waiter{Precise{}, Sleeper{}} {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				start := SystemTAI()
				sim := NewSim(WithTrueTime(rec.now), WithStateAt(start+int64(time.Millisecond), StateHoldover, "holdover"),
					WithOffset(100*time.Microsecond), WithDrift(200), WithUncertainty(150*time.Microsecond, 250))
				target := start + int64(4*time.Millisecond)
				if _, err := w.WaitUntil(context.Background(), ticking{sim, tick}, target); err != nil {
					t.Fatalf("%T: holdover refused: %v", w, err)
				}
				if at := rec.last.Load(); at < target {
					t.Fatalf("%T: early by %v in holdover", w, time.Duration(target-at))
				}
			})
		}
	})
}

// fixedClock always returns the same reading: a stopped clock.
type fixedClock struct {
	r     Reading
	err   error
	reads atomic.Int64
}

func (c *fixedClock) Now() (Reading, error) {
	c.reads.Add(1)
	return c.r, c.err
}

func TestWaitUntilContext(t *testing.T) {
	cases := []struct {
		name     string
		w        Waiter
		ahead    time.Duration // target − Earliest; 0: math.MaxInt64
		tick     time.Duration // cost of a read
		ctx      func() (context.Context, context.CancelFunc)
		want     error
		at, upTo time.Duration // when the wait must end, in virtual time
	}{
		{"Precise, cancel while sleeping", Precise{}, time.Hour, 0, cancelAfter(10 * time.Millisecond), context.Canceled,
			10 * time.Millisecond, 10 * time.Millisecond},
		// Spinning, the context is looked at every ctxCheckEvery reads.
		{"Precise, cancel while spinning", Precise{}, time.Millisecond, time.Microsecond, cancelAfter(10 * time.Millisecond), context.Canceled,
			10 * time.Millisecond, 10*time.Millisecond + ctxCheckEvery*time.Microsecond},
		{"Precise, deadline, target at max int64", Precise{}, 0, 0, timeout(10 * time.Millisecond), context.DeadlineExceeded,
			10 * time.Millisecond, 10 * time.Millisecond},
		{"Sleeper, cancel", Sleeper{}, time.Hour, 0, cancelAfter(30 * time.Millisecond), context.Canceled,
			30 * time.Millisecond, 30 * time.Millisecond},
		{"Sleeper, deadline, target at max int64", Sleeper{}, 0, 0, timeout(250 * time.Millisecond), context.DeadlineExceeded,
			250 * time.Millisecond, 250 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := SystemTAI()
				var c Clock = &fixedClock{r: Reading{Earliest: now, Latest: now, State: StateSynchronized}}
				if tc.tick > 0 {
					c = ticking{c, tc.tick}
				}
				target := int64(math.MaxInt64)
				if tc.ahead > 0 {
					target = now + int64(tc.ahead)
				}
				ctx, cancel := tc.ctx()
				defer cancel()
				start := time.Now()
				_, err := tc.w.WaitUntil(ctx, c, target)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if d := time.Since(start); d < tc.at || d > tc.upTo {
					t.Errorf("returned after %v, want in [%v, %v]", d, tc.at, tc.upTo)
				}
			})
		})
	}
	t.Run("already cancelled", func(t *testing.T) {
		for _, w := range []Waiter{Precise{}, Sleeper{}} {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			now := SystemTAI()
			c := &fixedClock{r: Reading{Earliest: now, Latest: now, State: StateSynchronized}}
			if _, err := w.WaitUntil(ctx, c, now-1); !errors.Is(err, context.Canceled) {
				t.Fatalf("%T: err = %v, want context.Canceled", w, err)
			}
			if n := c.reads.Load(); n != 0 {
				t.Errorf("%T: clock read %d times after cancellation", w, n)
			}
		}
	})
}

func cancelAfter(d time.Duration) func() (context.Context, context.CancelFunc) {
	return func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(d, cancel)
		return ctx, cancel
	}
}

func timeout(d time.Duration) func() (context.Context, context.CancelFunc) {
	return func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), d) }
}

func TestWaitUntilBadClocks(t *testing.T) {
	errRead := errors.New("device vanished")
	now := SystemTAI()
	for _, w := range []Waiter{Precise{}, Sleeper{}} {
		if _, err := w.WaitUntil(context.Background(), nil, now); err == nil {
			t.Errorf("%T, nil clock: no error", w)
		}
		if _, err := w.WaitUntil(context.Background(), &fixedClock{err: errRead}, now); !errors.Is(err, errRead) {
			t.Errorf("%T, read error: got %v, want it wrapped", w, err)
		}
		inverted := &fixedClock{r: Reading{Earliest: now + 10, Latest: now, State: StateSynchronized}}
		if _, err := w.WaitUntil(context.Background(), inverted, now); err == nil {
			t.Errorf("%T, Earliest > Latest: no error", w)
		}
		// A target far in the past must report a huge positive lateness,
		// not wrap around to a negative one.
		ok := &fixedClock{r: Reading{Earliest: now, Latest: now, State: StateSynchronized}}
		late, err := w.WaitUntil(context.Background(), ok, math.MinInt64)
		if err != nil || late <= 0 {
			t.Errorf("%T, target MinInt64: late %v, err %v; want large positive", w, late, err)
		}
	}
}

func TestWaitUntilPastTarget(t *testing.T) {
	now := SystemTAI()
	for _, w := range []Waiter{Precise{}, Sleeper{}} {
		c := &fixedClock{r: Reading{Earliest: now, Latest: now + 10, State: StateSynchronized}}
		late, err := w.WaitUntil(context.Background(), c, now-int64(time.Millisecond))
		if err != nil || late != time.Millisecond {
			t.Fatalf("%T: late %v, err %v; want exactly 1ms (Earliest − t)", w, late, err)
		}
		if n := c.reads.Load(); n != 1 {
			t.Errorf("%T: past target took %d reads, want 1 (no sleep, no spin)", w, n)
		}
		late, err = w.WaitUntil(context.Background(), c, now)
		if err != nil || late != 0 {
			t.Errorf("%T: target == Earliest: late %v, err %v; want 0, nil", w, late, err)
		}
	}
}

func TestSubSat(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{5, 3, 2},
		{-5, 3, -8},
		{math.MaxInt64, -1, math.MaxInt64},
		{math.MinInt64, 1, math.MinInt64},
		{0, math.MinInt64, math.MaxInt64},
		{-1, math.MaxInt64, math.MinInt64},
	} {
		if got := subSat(tc.a, tc.b); got != tc.want {
			t.Errorf("subSat(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if got := negSat(math.MinInt64); got != math.MaxInt64 {
		t.Errorf("negSat(MinInt64) = %d", got)
	}
}
