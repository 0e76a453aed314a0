package ptp

import "golang.org/x/sys/unix"

// rawOscillator is the local oscillator: CLOCK_MONOTONIC_RAW, which no
// time daemon steers or steps, or Go's monotonic clock on a kernel without
// it. The choice is made once, so that readings never mix two origins.
var rawOscillator = func() func() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &ts) != nil {
		return goMonotonic
	}
	return func() int64 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_RAW, &ts) // probed above
		return ts.Nano()
	}
}()
