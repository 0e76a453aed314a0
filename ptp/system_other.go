//go:build !linux

package ptp

import "fmt"

// readAdjtimex has no equivalent off Linux; only WithAssumeSynchronized
// system clocks work there.
func readAdjtimex() (kernelTime, error) {
	return kernelTime{}, fmt.Errorf("adjtimex: %w", ErrNotSupported)
}
