package daemon

import (
	"math"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// TestOpenFunc: a scripted daemon's estimate is the bound at data age 0,
// widens with age at the stated ppm, and an estimate that could narrow the
// bound (negative, NaN skew) or an answer that fails holds releases.
func TestOpenFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ppm = 10
		est := 400 * time.Microsecond
		sim := ptp.NewSim(ptp.WithOffset(localOffset))
		var bad atomic.Int32
		s, err := OpenFunc("scripted", func() (Estimate, error) {
			switch bad.Load() {
			case 1:
				return Estimate{Synced: true, Bound: -est, DataTAI: sim.True()}, nil
			case 2:
				return Estimate{Synced: true, Bound: est, SkewPPM: math.NaN(), DataTAI: sim.True()}, nil
			}
			return Estimate{Synced: true, Summary: "fine", Bound: est, DataTAI: sim.True(), Interval: time.Second}, nil
		}, WithBase(sim), WithDriftPPM(ppm), WithMaxAge(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r := read(t, s, sim)
		// The data is stamped by true time, the base reads localOffset ahead.
		if want := est + widen(localOffset, ppm); r.State != ptp.StateSynchronized || r.Uncertainty() != want || r.DataAge != localOffset {
			t.Fatalf("reading %v ±%v age %v, want synchronized ±%v age %v (%s)", r.State, r.Uncertainty(), r.DataAge, want, localOffset, r.Reason)
		}
		for _, b := range []int32{1, 2} {
			bad.Store(b)
			time.Sleep(time.Second) // the next question
			synctest.Wait()
			wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "invalid estimate")
		}
	})
}
