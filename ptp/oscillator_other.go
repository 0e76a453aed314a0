//go:build !linux

package ptp

// rawOscillator falls back to Go's monotonic clock, which may be slewed
// (never stepped) by the platform's time daemon.
var rawOscillator = goMonotonic
