package phc

import (
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// tai0 is an arbitrary TAI instant for synthetic PHC samples.
const tai0 = int64(1_790_000_037_000_000_000)

func mustConfig(t *testing.T, opts ...Option) *config {
	t.Helper()
	c, err := newConfig(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestBoundArithmetic(t *testing.T) {
	us := time.Microsecond
	now := time.Now()
	cfg := mustConfig(t, WithErrorBudget(100*us), WithHoldoverDrift(10), WithMaxHoldover(10*time.Second),
		WithSyncSource(NewSyncTracker(time.Second)))
	// A 2 µs read window, typical of clock_gettime on a NIC PHC.
	s := sample{Before: 5_000, PHC: tai0, After: 7_000}
	cases := []struct {
		name           string
		sample         sample
		last           time.Time
		synced         bool
		state          ptp.State
		earliest, late int64 // Earliest, Latest relative to tai0
		reasonHas      string
	}{
		{"synchronized: budget, plus window above", s, now, true, ptp.StateSynchronized,
			-100_000, 2_000 + 100_000, "synchronized"},
		{"zero window (precise)", sample{PHC: tai0}, now, true, ptp.StateSynchronized,
			-100_000, 100_000, "synchronized"},
		{"inverted window clamps to zero", sample{Before: 9, PHC: tai0, After: 3}, now, true, ptp.StateSynchronized,
			-100_000, 100_000, "synchronized"},
		{"holdover 3s grows 10ppm", s, now.Add(-3 * time.Second), false, ptp.StateHoldover,
			-130_000, 2_000 + 130_000, "holdover 3s"},
		{"holdover exactly at max", s, now.Add(-10 * time.Second), false, ptp.StateHoldover,
			-200_000, 2_000 + 200_000, "holdover 10s"},
		{"beyond max holdover", s, now.Add(-10*time.Second - time.Millisecond), false, ptp.StateUnsynchronized,
			-200_010, 2_000 + 200_010, "exceeds max 10s"},
		{"never synchronized", s, time.Time{}, false, ptp.StateUnsynchronized,
			math.MinInt64, math.MaxInt64, "never synchronized"},
		{"last sync in the future counts as now", s, now.Add(time.Second), false, ptp.StateHoldover,
			-100_000, 2_000 + 100_000, "holdover 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := readingOf(tc.sample, tc.last, tc.synced, now, cfg)
			if r.State != tc.state {
				t.Errorf("state %v, want %v (%s)", r.State, tc.state, r.Reason)
			}
			if !strings.Contains(r.Reason, tc.reasonHas) {
				t.Errorf("reason %q lacks %q", r.Reason, tc.reasonHas)
			}
			if tc.earliest == math.MinInt64 {
				return // bounds of a never-synchronized clock are display-only
			}
			if got := r.Earliest - tai0; got != tc.earliest {
				t.Errorf("Earliest = tai0%+d, want %+d", got, tc.earliest)
			}
			if got := r.Latest - tai0; got != tc.late {
				t.Errorf("Latest = tai0%+d, want %+d", got, tc.late)
			}
		})
	}
	// The stated half-width is window/2 + budget.
	if r := readingOf(s, now, true, now, cfg); r.Uncertainty() != 101*us {
		t.Errorf("uncertainty %v, want 101µs", r.Uncertainty())
	}
}

// TestBoundIsSound checks the interval against a PHC that is read at any
// instant inside the window and is off by up to the budget: at the moment
// the read returns, true time must lie inside [Earliest, Latest].
func TestPHCBoundIsSound(t *testing.T) {
	cfg := mustConfig(t, WithErrorBudget(50*time.Microsecond))
	const before, after = 1_000, 9_000 // true times bracketing the read
	for latch := int64(before); latch <= after; latch += 2_000 {
		for _, phcErr := range []int64{-50_000, 0, 50_000} {
			s := sample{Before: before, PHC: latch + phcErr, After: after}
			r := readingOf(s, time.Now(), true, time.Now(), cfg)
			if r.Earliest > after || r.Latest < after {
				t.Errorf("latch %d err %d: true %d outside [%d, %d]", latch, phcErr, after, r.Earliest, r.Latest)
			}
		}
	}
}

func TestBestSampleAndOffset(t *testing.T) {
	if _, ok := bestSample(nil); ok {
		t.Error("bestSample(nil) reported a sample")
	}
	// Shaped like a PTP_SYS_OFFSET_EXTENDED answer: realtime before/after
	// around a PHC 37 s ahead; the third sample was interrupted.
	rt := int64(1_790_000_000_000_000_000)
	samples := []sample{
		{Before: rt, PHC: rt + 37e9 + 1_200, After: rt + 2_600},
		{Before: rt + 3_000, PHC: rt + 37e9 + 3_900, After: rt + 4_800},
		{Before: rt + 5_000, PHC: rt + 37e9 + 19_000, After: rt + 31_000},
	}
	best, ok := bestSample(samples)
	if !ok || best != samples[1] {
		t.Fatalf("best = %+v, want the 1.8 µs window %+v", best, samples[1])
	}
	o := sysOffsetFrom(best, "PTP_SYS_OFFSET_EXTENDED", ptp.Reading{})
	// mid = rt+3900, PHC = rt+37e9+3900: system is exactly 37 s behind.
	if o.Offset != -37*time.Second || o.Window != 1800 {
		t.Errorf("offset %v window %v, want −37s, 1.8µs", o.Offset, o.Window)
	}
	if e := o.SystemError(ptp.DefaultTAIOffset); e != 0 {
		t.Errorf("SystemError = %v, want 0 for a system clock exactly on UTC", e)
	}
	if e := o.SystemError(ptp.TAIOffset(36 * time.Second)); e != -time.Second {
		t.Errorf("SystemError(36s) = %v, want −1s", e)
	}
}

// TestSyncTracker runs in virtual time, so the freshness window is checked
// to the nanosecond.
func TestSyncTracker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewSyncTracker(time.Second)
		if last, ok := tr.LastSync(); ok || !last.IsZero() {
			t.Fatalf("new tracker: (%v, %v), want never synchronized", last, ok)
		}
		at := time.Now()
		tr.Synced(at)
		if last, ok := tr.LastSync(); !ok || !last.Equal(at) {
			t.Errorf("after Synced: (%v, %v), want (%v, true)", last, ok, at)
		}
		time.Sleep(time.Second)
		if _, ok := tr.LastSync(); !ok {
			t.Error("exactly fresh after Synced: not synchronized")
		}
		time.Sleep(time.Nanosecond)
		if last, ok := tr.LastSync(); ok || !last.Equal(at) {
			t.Errorf("1 ns past fresh: (%v, %v), want stale from %v", last, ok, at)
		}
		at = time.Now()
		tr.Synced(at)
		tr.Lost()
		if last, ok := tr.LastSync(); ok || !last.Equal(at) {
			t.Errorf("after Lost: (%v, %v), want holdover from %v", last, ok, at)
		}
		// End to end: a lost tracker feeding the bound, 3 s into holdover.
		time.Sleep(3 * time.Second)
		cfg := mustConfig(t, WithSyncSource(tr), WithMaxHoldover(time.Minute))
		last, ok := tr.LastSync()
		r := readingOf(sample{PHC: tai0}, last, ok, time.Now(), cfg)
		if r.State != ptp.StateHoldover || r.Uncertainty() != DefaultErrorBudget+30*time.Microsecond {
			t.Errorf("3 s after Lost: %v ±%v, want holdover ±%v", r.State, r.Uncertainty(), DefaultErrorBudget+30*time.Microsecond)
		}
	})
}

func TestDefaultsAndOptions(t *testing.T) {
	cfg := mustConfig(t)
	r := readingOf(sample{PHC: tai0}, time.Time{}, true, time.Now(), cfg)
	if r.State != ptp.StateSynchronized || !strings.Contains(r.Reason, "ASSUMED") {
		t.Errorf("default sync source: %v %q, want synchronized and saying it is assumed", r.State, r.Reason)
	}
	if r.Uncertainty() != DefaultErrorBudget {
		t.Errorf("default budget: ±%v, want %v", r.Uncertainty(), DefaultErrorBudget)
	}
	for name, o := range map[string]Option{
		"negative budget":      WithErrorBudget(-1),
		"negative drift":       WithHoldoverDrift(-1),
		"NaN drift":            WithHoldoverDrift(math.NaN()),
		"negative max":         WithMaxHoldover(-1),
		"nil sync source":      WithSyncSource(nil),
		"absurd drift (>100%)": WithHoldoverDrift(2e6),
	} {
		if _, err := newConfig([]Option{o}); !errors.Is(err, ptp.ErrInvalidOption) {
			t.Errorf("%s: err = %v, want ptp.ErrInvalidOption", name, err)
		}
		if _, err := Open("/dev/ptp0", o); !errors.Is(err, ptp.ErrInvalidOption) {
			t.Errorf("%s: Open err = %v, want ptp.ErrInvalidOption before touching a device", name, err)
		}
	}
}

func TestDriftOver(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		ppm  float64
		want time.Duration
	}{
		{time.Second, 10, 10 * time.Microsecond},
		{time.Second + 1, 10, 10*time.Microsecond + 1}, // rounded up
		{time.Hour, 0, 0},
		{math.MaxInt64, 1e6, 1 << 62}, // saturates
	} {
		if got := driftOver(tc.d, tc.ppm); got != tc.want {
			t.Errorf("driftOver(%v, %v) = %v, want %v", tc.d, tc.ppm, got, tc.want)
		}
	}
}
