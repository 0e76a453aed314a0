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
