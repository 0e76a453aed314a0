package ptp

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKernelTAIOffset checks the adjtimex answer against what it claims to
// be: CLOCK_TAI − CLOCK_REALTIME. The TAI read is bracketed by two
// CLOCK_REALTIME reads, so the offset lies in [tai − after, tai − before]
// however long the reads take.
func TestKernelTAIOffset(t *testing.T) {
	off, err := KernelTAIOffset()
	if err != nil {
		t.Fatal(err)
	}
	var before, tai, after unix.Timespec
	for _, r := range []struct {
		id int32
		ts *unix.Timespec
	}{{unix.CLOCK_REALTIME, &before}, {unix.CLOCK_TAI, &tai}, {unix.CLOCK_REALTIME, &after}} {
		if err := unix.ClockGettime(r.id, r.ts); err != nil {
			t.Fatalf("clock_gettime(%d): %v", r.id, err)
		}
	}
	lo, hi := time.Duration(tai.Nano()-after.Nano()), time.Duration(tai.Nano()-before.Nano())
	if d := time.Duration(off); d < lo || d > hi || d%time.Second != 0 {
		t.Errorf("KernelTAIOffset = %v, want whole seconds in CLOCK_TAI − CLOCK_REALTIME ∈ [%v, %v]", d, lo, hi)
	}
	t.Logf("kernel TAI offset %v", time.Duration(off))
}
