package ptp

import (
	"testing"
	"time"
)

// The logic tests run in virtual time (testing/synctest): inside a bubble
// time.Now, timers and time.Sleep are the bubble's fake clock, so SystemTAI
// (a Sim's default true time) is virtual too and a test moves true time with
// time.Sleep. Real syscalls are not virtual, so nothing here reads
// CLOCK_MONOTONIC_RAW or adjtimex: the guard gets virtualOscillator, the
// system clock a fake adjtimex.

func mustRead(t *testing.T, c Clock) Reading {
	t.Helper()
	r, err := c.Now()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sleepUntil sleeps until SystemTAI reaches tai (at once if it has).
func sleepUntil(tai int64) { time.Sleep(time.Duration(tai - SystemTAI())) }

// virtualOscillator is a perfect local oscillator on the bubble's clock, in
// nanoseconds since it was made.
func virtualOscillator() func() int64 {
	start := time.Now()
	return func() int64 { return int64(time.Since(start)) }
}

// ticking makes every read of a clock cost d, as a real read costs real
// time. In a bubble that is what lets a spin on it advance virtual time, so
// that timers (a context's deadline, another goroutine's sleep) fire while
// Precise spins.
type ticking struct {
	c Clock
	d time.Duration
}

func (k ticking) Now() (Reading, error) {
	time.Sleep(k.d)
	return k.c.Now()
}
