package ptp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Sleeper is the Waiter of tests in virtual time, so its own tests pin what
// they rely on: it returns at exactly the virtual instant Earliest reaches
// the target, never before, re-reads the clock at least every MaxSleep,
// honours its context and refuses an unsynchronized clock.

func TestSleeperReturnsExactlyAtTheInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Earliest is true time − 800 µs: 300 µs behind, ±500 µs.
		sim := NewSim(WithOffset(-300*time.Microsecond), WithUncertainty(500*time.Microsecond, 0))
		for _, ahead := range []time.Duration{1, 50 * time.Millisecond, 100 * time.Millisecond, 1500 * time.Millisecond} {
			target := SystemTAI() + int64(ahead)
			late, err := Sleeper{}.WaitUntil(context.Background(), sim, target)
			if err != nil {
				t.Fatal(err)
			}
			if late != 0 {
				t.Errorf("%v ahead: lateness %v, want 0", ahead, late)
			}
			if got, want := SystemTAI(), target+int64(800*time.Microsecond); got != want {
				t.Errorf("%v ahead: returned at true target%+v, want target+800µs", ahead, time.Duration(got-target))
			}
			if r := mustRead(t, sim); r.Earliest != target {
				t.Errorf("%v ahead: Earliest %d at return, want the target %d", ahead, r.Earliest, target)
			}
		}
	})
}

func TestSleeperFollowsSteps(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name      string
		stepAt    int64 // true time of the step, relative to start
		by        time.Duration
		maxSleep  time.Duration
		returnsAt int64 // true time, relative to start
		late      time.Duration
	}{
		// The target is start+1s. A forward step past it is noticed at the
		// next read: after at most MaxSleep.
		{"forward, default MaxSleep", 200 * ms, time.Second, 0, 200 * ms, 200 * time.Millisecond},
		{"forward, between reads", 250 * ms, time.Second, 0, 300 * ms, 300 * time.Millisecond},
		{"forward, MaxSleep 30ms", 250 * ms, time.Second, 30 * time.Millisecond, 270 * ms, 270 * time.Millisecond},
		// A negative MaxSleep is the default, as for Precise; it used to
		// make every timer fire at once, a busy loop that never lets a
		// bubble's clock advance.
		{"forward, negative MaxSleep", 250 * ms, time.Second, -time.Second, 300 * ms, 300 * time.Millisecond},
		// A backward step makes it wait the step's size longer.
		{"backward", 500 * ms, -50 * time.Millisecond, 0, 1050 * ms, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := SystemTAI()
				sim := NewSim(WithStep(start+tc.stepAt, tc.by))
				late, err := Sleeper{MaxSleep: tc.maxSleep}.WaitUntil(context.Background(), sim, start+int64(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if at := SystemTAI() - start; at != tc.returnsAt || late != tc.late {
					t.Errorf("returned at start%+v late %v, want start%+v late %v",
						time.Duration(at), late, time.Duration(tc.returnsAt), tc.late)
				}
			})
		})
	}
}

func TestSleeperSyncLossMidWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := SystemTAI()
		sim := NewSim(WithStateAt(start+int64(350*time.Millisecond), StateUnsynchronized, "servo unlocked"))
		_, err := Sleeper{}.WaitUntil(context.Background(), sim, start+int64(time.Second))
		if !errors.Is(err, ErrUnsynchronized) || !strings.Contains(err.Error(), "servo unlocked") {
			t.Fatalf("err = %v, want ErrUnsynchronized with the reason", err)
		}
		// Reads every DefaultMaxSleep (100 ms): the one at 400 ms refuses.
		if at := time.Duration(SystemTAI() - start); at != 400*time.Millisecond {
			t.Errorf("refused at start+%v, want start+400ms", at)
		}
	})
}
