package ptp

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a true-time source remembering the last value it returned.
// For a Sim read only by WaitUntil that is the true time of the read that
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

// watchdog fails the test if f does not return within a generous limit; it
// checks liveness (a wait that never ends), not speed.
func watchdog(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitUntil did not return within 10s")
	}
}

func TestWaitUntilNeverEarly(t *testing.T) {
	us, ms := time.Microsecond, time.Millisecond
	cases := []struct {
		name string
		opts func(start int64) []SimOption
	}{
		{"ahead within bound", func(int64) []SimOption {
			return []SimOption{WithOffset(400 * us), WithUncertainty(500*us, 0)}
		}},
		{"behind within bound", func(int64) []SimOption {
			return []SimOption{WithOffset(-400 * us), WithUncertainty(500*us, 0)}
		}},
		{"fast drift, growing holdover bound", func(start int64) []SimOption {
			return []SimOption{WithDrift(300), WithStateAt(start, StateHoldover, "test holdover"), WithUncertainty(20*us, 300)}
		}},
		{"slow drift, growing holdover bound", func(start int64) []SimOption {
			return []SimOption{WithDrift(-300), WithStateAt(start, StateHoldover, "test holdover"), WithUncertainty(20*us, 300)}
		}},
		{"jitter", func(int64) []SimOption {
			return []SimOption{WithOffset(50 * us), WithJitter(200*us, 7), WithUncertainty(250*us, 0)}
		}},
		{"small steps forward and backward", func(start int64) []SimOption {
			return append(alternatingSteps(start, 2500*us, 900*us, 800), WithUncertainty(450*us, 0))
		}},
		{"large steps forward and backward", func(start int64) []SimOption {
			return append(alternatingSteps(start, 7*ms, 10*ms, 300), WithUncertainty(5*ms, 0))
		}},
		{"everything at once", func(start int64) []SimOption {
			return append(alternatingSteps(start, 3*ms, 600*us, 700),
				WithDrift(100), WithJitter(50*us, 11), WithStateAt(start, StateHoldover, "x"),
				WithUncertainty(350*us, 100))
		}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const waits = 50
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			start := SystemTAI()
			sim := NewSim(append(tc.opts(start), WithTrueTime(rec.now))...)
			for i := range waits {
				target := sim.True() + int64(200*us) + rng.Int64N(int64(2800*us))
				if i%10 == 9 { // already past: must return at once, still not early
					target = sim.True() - int64(ms)
				}
				var late time.Duration
				var err error
				watchdog(t, func() { late, err = WaitUntil(context.Background(), sim, target) })
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
		})
	}
}

// TestNeverEarlyCheckCanFail shows the check above detects earliness: a Sim
// that is 3 ms ahead but claims a zero bound (a lying clock) releases early,
// and the recorder sees it.
func TestNeverEarlyCheckCanFail(t *testing.T) {
	rec := &recorder{}
	sim := NewSim(WithOffset(3*time.Millisecond), WithTrueTime(rec.now))
	target := sim.True() + int64(time.Millisecond)
	if _, err := WaitUntil(context.Background(), sim, target); err != nil {
		t.Fatal(err)
	}
	if authorizedAt := rec.last.Load(); authorizedAt >= target {
		t.Fatalf("lying clock was not early (true %d ≥ target %d): the never-early check would be vacuous", authorizedAt, target)
	}
}

func TestWaitUntilRefusesUnsynchronized(t *testing.T) {
	start := SystemTAI()
	sim := NewSim(WithStateAt(start-1, StateUnsynchronized, "gps antenna cut"))
	for _, target := range []int64{start - int64(time.Second), start + int64(time.Hour)} {
		_, err := WaitUntil(context.Background(), sim, target)
		if !errors.Is(err, ErrUnsynchronized) {
			t.Fatalf("target %d: err = %v, want ErrUnsynchronized", target, err)
		}
		if !strings.Contains(err.Error(), "gps antenna cut") {
			t.Errorf("error %q does not carry the reading's reason", err)
		}
	}
}

func TestWaitUntilSyncLossMidWait(t *testing.T) {
	t.Run("while sleeping", func(t *testing.T) {
		rec := &recorder{}
		start := SystemTAI()
		lossAt := start + int64(3*time.Millisecond)
		sim := NewSim(WithTrueTime(rec.now), WithStateAt(lossAt, StateUnsynchronized, "servo unlocked"))
		target := start + int64(300*time.Millisecond)
		var err error
		watchdog(t, func() { _, err = Precise{MaxSleep: 5 * time.Millisecond}.WaitUntil(context.Background(), sim, target) })
		if !errors.Is(err, ErrUnsynchronized) {
			t.Fatalf("err = %v, want ErrUnsynchronized", err)
		}
		if at := rec.last.Load(); at < lossAt || at >= target {
			t.Errorf("refusal read at true %d, want in [loss %d, target %d)", at, lossAt, target)
		}
	})
	t.Run("while spinning", func(t *testing.T) {
		// A frozen clock (drift −100%) keeps WaitUntil spinning just short
		// of the target until another goroutine drops sync.
		sim := NewSim(WithDrift(-1e6))
		r, err := sim.Now()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(20 * time.Millisecond)
			sim.SetState(StateUnsynchronized, "sync lost mid-spin")
		}()
		watchdog(t, func() { _, err = WaitUntil(context.Background(), sim, r.Earliest+int64(time.Millisecond)) })
		if !errors.Is(err, ErrUnsynchronized) || !strings.Contains(err.Error(), "mid-spin") {
			t.Fatalf("err = %v, want ErrUnsynchronized with reason", err)
		}
	})
	t.Run("holdover keeps releasing", func(t *testing.T) {
		rec := &recorder{}
		start := SystemTAI()
		sim := NewSim(WithTrueTime(rec.now), WithStateAt(start+int64(time.Millisecond), StateHoldover, "holdover"),
			WithOffset(100*time.Microsecond), WithDrift(200), WithUncertainty(150*time.Microsecond, 250))
		target := start + int64(4*time.Millisecond)
		if _, err := WaitUntil(context.Background(), sim, target); err != nil {
			t.Fatalf("holdover refused: %v", err)
		}
		if at := rec.last.Load(); at < target {
			t.Fatalf("early by %v in holdover", time.Duration(target-at))
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
	now := SystemTAI()
	synced := Reading{Earliest: now, Latest: now, State: StateSynchronized}
	cases := []struct {
		name   string
		target int64
		ctx    func() (context.Context, context.CancelFunc)
		want   error
	}{
		{"cancel while sleeping", now + int64(time.Hour), cancelAfter(10 * time.Millisecond), context.Canceled},
		{"cancel while spinning", now + int64(time.Millisecond), cancelAfter(10 * time.Millisecond), context.Canceled},
		{"deadline, target at max int64", math.MaxInt64, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			var err error
			watchdog(t, func() { _, err = WaitUntil(ctx, &fixedClock{r: synced}, tc.target) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c := &fixedClock{r: synced}
		if _, err := WaitUntil(ctx, c, now-1); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if n := c.reads.Load(); n != 0 {
			t.Errorf("clock read %d times after cancellation", n)
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

func TestWaitUntilBadClocks(t *testing.T) {
	errRead := errors.New("device vanished")
	now := SystemTAI()
	if _, err := WaitUntil(context.Background(), nil, now); err == nil {
		t.Error("nil clock: no error")
	}
	if _, err := WaitUntil(context.Background(), &fixedClock{err: errRead}, now); !errors.Is(err, errRead) {
		t.Errorf("read error: got %v, want it wrapped", err)
	}
	inverted := &fixedClock{r: Reading{Earliest: now + 10, Latest: now, State: StateSynchronized}}
	if _, err := WaitUntil(context.Background(), inverted, now); err == nil {
		t.Error("Earliest > Latest: no error")
	}
	// A target far in the past must report a huge positive lateness, not
	// wrap around to a negative one.
	ok := &fixedClock{r: Reading{Earliest: now, Latest: now, State: StateSynchronized}}
	late, err := WaitUntil(context.Background(), ok, math.MinInt64)
	if err != nil || late <= 0 {
		t.Errorf("target MinInt64: late %v, err %v; want large positive", late, err)
	}
}

func TestWaitUntilPastTarget(t *testing.T) {
	now := SystemTAI()
	c := &fixedClock{r: Reading{Earliest: now, Latest: now + 10, State: StateSynchronized}}
	late, err := WaitUntil(context.Background(), c, now-int64(time.Millisecond))
	if err != nil || late != time.Millisecond {
		t.Fatalf("late %v, err %v; want exactly 1ms (Earliest − t)", late, err)
	}
	if n := c.reads.Load(); n != 1 {
		t.Errorf("past target took %d reads, want 1 (no sleep, no spin)", n)
	}
	late, err = WaitUntil(context.Background(), c, now)
	if err != nil || late != 0 {
		t.Errorf("target == Earliest: late %v, err %v; want 0, nil", late, err)
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
