package ptp

import (
	"math"
	"testing"
	"time"
)

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{
		StateUnsynchronized: "unsynchronized",
		StateHoldover:       "holdover",
		StateSynchronized:   "synchronized",
		State(9):            "state(9)",
	} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
	var zero State
	if zero != StateUnsynchronized {
		t.Errorf("zero State is %v, want unsynchronized (the safe default)", zero)
	}
}

func TestReadingMidUncertainty(t *testing.T) {
	for _, tc := range []struct {
		r    Reading
		mid  int64
		unc  time.Duration
		name string
	}{
		{Reading{Earliest: 100, Latest: 300}, 200, 100, "plain"},
		{Reading{Earliest: 5, Latest: 5}, 5, 0, "point"},
		{Reading{Earliest: -300, Latest: -100}, -200, 100, "negative"},
		// Mid must not overflow where (E+L)/2 would.
		{Reading{Earliest: math.MaxInt64 - 10, Latest: math.MaxInt64}, math.MaxInt64 - 5, 5, "near max"},
	} {
		if got := tc.r.Mid(); got != tc.mid {
			t.Errorf("%s: Mid = %d, want %d", tc.name, got, tc.mid)
		}
		if got := tc.r.Uncertainty(); got != tc.unc {
			t.Errorf("%s: Uncertainty = %v, want %v", tc.name, got, tc.unc)
		}
	}
}
