package ptp

import "time"

// The local oscillator is what Guard measures elapsed time with: rawOscillator
// (oscillator_linux.go, oscillator_other.go) is CLOCK_MONOTONIC_RAW where the
// kernel has it and goMonotonic otherwise. Readings are nanoseconds from an
// arbitrary origin, only ever subtracted from each other.

var processStart = time.Now()

// goMonotonic is Go's monotonic clock in nanoseconds since process start.
func goMonotonic() int64 { return int64(time.Since(processStart)) }
