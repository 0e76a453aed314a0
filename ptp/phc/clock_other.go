//go:build !linux

package phc

import (
	"fmt"

	"github.com/embargo-live/embargo/ptp"
)

// Clock is a PTP hardware clock. PHCs are a Linux interface; on this
// platform Open always fails with ptp.ErrNotSupported.
type Clock struct{ path string }

// Open returns an error wrapping ptp.ErrNotSupported on this platform (or
// ptp.ErrInvalidOption for an invalid option, as on Linux).
func Open(device string, opts ...Option) (*Clock, error) {
	if _, err := newConfig(opts); err != nil {
		return nil, fmt.Errorf("phc %s: %w", device, err)
	}
	return nil, fmt.Errorf("phc %s: %w", device, ptp.ErrNotSupported)
}

// Path is the device path.
func (p *Clock) Path() string { return p.path }

// Close does nothing on this platform.
func (p *Clock) Close() error { return nil }

// Now returns an error wrapping ptp.ErrNotSupported.
func (p *Clock) Now() (ptp.Reading, error) {
	return ptp.Reading{}, fmt.Errorf("phc: %w", ptp.ErrNotSupported)
}

// SysOffset returns an error wrapping ptp.ErrNotSupported.
func (p *Clock) SysOffset() (SysOffset, error) {
	return SysOffset{}, fmt.Errorf("phc: %w", ptp.ErrNotSupported)
}
