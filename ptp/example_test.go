package ptp_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// A release instant is agreed in TAI; operators read it in UTC.
func ExampleTAIOffset() {
	releaseAt := ptp.DefaultTAIOffset.FromTime(time.Date(2026, 7, 19, 19, 0, 0, 0, time.UTC))
	fmt.Println(releaseAt)
	fmt.Println(ptp.DefaultTAIOffset.ToTime(releaseAt).UTC())
	// Output:
	// 1784487637000000000
	// 2026-07-19 19:00:00 +0000 UTC
}

// An edge whose clock runs 300 µs fast but knows it may be off by 500 µs
// still releases only once the true time has passed the instant.
func ExampleWaitUntil() {
	clock := ptp.NewSim(ptp.WithOffset(300*time.Microsecond), ptp.WithUncertainty(500*time.Microsecond, 0))
	releaseAt := clock.True() + int64(2*time.Millisecond)
	if _, err := ptp.WaitUntil(context.Background(), clock, releaseAt); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("released on time or late:", clock.True() >= releaseAt)
	// Output: released on time or late: true
}

// An unsynchronized clock refuses, loudly, instead of guessing.
func ExampleWaitUntil_unsynchronized() {
	clock := ptp.NewSim(ptp.WithStateAt(0, ptp.StateUnsynchronized, "adjtimex: STA_UNSYNC set"))
	_, err := ptp.WaitUntil(context.Background(), clock, clock.True())
	fmt.Println(errors.Is(err, ptp.ErrUnsynchronized))
	fmt.Println(err)
	// Output:
	// true
	// ptp: clock unsynchronized: adjtimex: STA_UNSYNC set
}
