//go:build !linux

package ptp

import "fmt"

// PHC is a PTP hardware clock. PHCs are a Linux interface; on this platform
// NewPHC always fails with ErrNotSupported.
type PHC struct{ path string }

// NewPHC returns an error wrapping ErrNotSupported on this platform.
func NewPHC(device string, opts ...PHCOption) (*PHC, error) {
	if _, err := newPHCConfig(opts); err != nil {
		return nil, fmt.Errorf("ptp: phc %s: %w", device, err)
	}
	return nil, fmt.Errorf("ptp: phc %s: %w", device, ErrNotSupported)
}

// Path is the device path.
func (p *PHC) Path() string { return p.path }

// Close does nothing on this platform.
func (p *PHC) Close() error { return nil }

// Now returns an error wrapping ErrNotSupported.
func (p *PHC) Now() (Reading, error) {
	return Reading{}, fmt.Errorf("ptp: phc: %w", ErrNotSupported)
}

// SysOffset returns an error wrapping ErrNotSupported.
func (p *PHC) SysOffset() (SysOffset, error) {
	return SysOffset{}, fmt.Errorf("ptp: phc: %w", ErrNotSupported)
}
