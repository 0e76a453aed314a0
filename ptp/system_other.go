//go:build !linux

package ptp

import "fmt"

// readAdjtimex has no equivalent off Linux; only WithAssumeSynchronized
// system clocks work there.
func readAdjtimex() (kernelTime, error) {
	return kernelTime{}, fmt.Errorf("adjtimex: %w", ErrNotSupported)
}

// rawOscillator falls back to Go's monotonic clock, which may be slewed
// (never stepped) by the platform's time daemon.
var rawOscillator = goMonotonic
