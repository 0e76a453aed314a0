package ptp

import (
	"fmt"
	"time"
)

// TAIOffset is TAI − UTC, the number of leap seconds plus the historical 10 s.
// It is the one conversion between the kernel's UTC clocks (CLOCK_REALTIME,
// socket stamps, time.Time) and the TAI nanoseconds of Reading and release
// instants; see the package documentation for the rule.
type TAIOffset time.Duration

// DefaultTAIOffset is TAI − UTC in force since 2017-01-01 (37 s). It is used
// when the kernel does not know the offset; a future leap second would make
// it stale, so operators should prefer a kernel-provided value.
const DefaultTAIOffset = TAIOffset(37 * time.Second)

// FromTime converts a UTC wall-clock time to TAI nanoseconds.
func (o TAIOffset) FromTime(t time.Time) int64 { return t.UnixNano() + int64(o) }

// ToTime converts TAI nanoseconds to a UTC time.Time (no monotonic reading).
func (o TAIOffset) ToTime(tai int64) time.Time { return time.Unix(0, tai-int64(o)) }

// KernelTAIOffset returns the TAI − UTC offset the kernel keeps (adjtimex's
// tai field, by which CLOCK_TAI differs from CLOCK_REALTIME), or 0 when
// nothing has set it: then CLOCK_TAI reads UTC, not TAI. Off Linux it
// returns an error wrapping ErrNotSupported. System.TAIOffset is the offset
// a clock converts with, falling back to DefaultTAIOffset when this is 0.
func KernelTAIOffset() (TAIOffset, error) {
	kt, err := readAdjtimex()
	if err != nil {
		return 0, fmt.Errorf("ptp: kernel TAI offset: %w", err)
	}
	return TAIOffset(time.Duration(kt.TAI) * time.Second), nil
}
