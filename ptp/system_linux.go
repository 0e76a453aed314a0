package ptp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// readAdjtimex asks the kernel for its NTP state without changing it (modes
// 0), which needs no privilege.
func readAdjtimex() (kernelTime, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return kernelTime{}, fmt.Errorf("adjtimex: %w", err)
	}
	return kernelTime{State: state, Status: tx.Status, MaxError: tx.Maxerror, TAI: tx.Tai}, nil
}

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
