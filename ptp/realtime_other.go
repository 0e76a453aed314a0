//go:build !linux

package ptp

import (
	"fmt"
	"time"
)

func setFIFO(prio int) (func(), error) {
	return nil, fmt.Errorf("SCHED_FIFO: %w", ErrNotSupported)
}

// ProbeRealtime returns an error wrapping ErrNotSupported: real-time
// scheduling is set through Linux's sched_setattr.
func ProbeRealtime(prio int) error { return fmt.Errorf("SCHED_FIFO: %w", ErrNotSupported) }

func threadSleep(d time.Duration) { time.Sleep(d) }
