//go:build !linux

package bpf

import (
	"fmt"
	"net/netip"
	"syscall"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// Filter is a socket filter. BPF socket filters are a Linux interface; on
// this platform NewFilter always fails with ErrNotSupported and receivers
// use a user-space Histogram.
type Filter struct{}

// NewFilter returns an error wrapping ErrNotSupported on this platform.
func NewFilter(opts ...Option) (*Filter, error) {
	if _, err := newConfig(opts); err != nil {
		return nil, fmt.Errorf("bpf: new filter: %w", err)
	}
	return nil, fmt.Errorf("bpf: new filter: %w", ErrNotSupported)
}

// Available returns an error wrapping ErrNotSupported on this platform.
func Available() error { return fmt.Errorf("bpf: %w", ErrNotSupported) }

// Attach returns an error wrapping ErrNotSupported.
func (f *Filter) Attach(c syscall.Conn) error { return fmt.Errorf("bpf: attach: %w", ErrNotSupported) }

// Detach returns an error wrapping ErrNotSupported.
func (f *Filter) Detach(c syscall.Conn) error { return fmt.Errorf("bpf: detach: %w", ErrNotSupported) }

// SetLoss returns an error wrapping ErrNotSupported.
func (f *Filter) SetLoss(p float64) error { return fmt.Errorf("bpf: set loss: %w", ErrNotSupported) }

// SetSources returns an error wrapping ErrNotSupported.
func (f *Filter) SetSources(addrs []netip.Addr) error {
	return fmt.Errorf("bpf: set sources: %w", ErrNotSupported)
}

// SetTAIOffset returns an error wrapping ErrNotSupported.
func (f *Filter) SetTAIOffset(receiver ptp.TAIOffset) error {
	return fmt.Errorf("bpf: set TAI offset: %w", ErrNotSupported)
}

// Verdicts returns an error wrapping ErrNotSupported.
func (f *Filter) Verdicts() (map[string]uint64, error) {
	return nil, fmt.Errorf("bpf: verdicts: %w", ErrNotSupported)
}

// Histogram returns an error wrapping ErrNotSupported.
func (f *Filter) Histogram() (skew.Histogram, error) {
	return skew.Histogram{}, fmt.Errorf("bpf: histogram: %w", ErrNotSupported)
}

// Unconfirmed returns an error wrapping ErrNotSupported.
func (f *Filter) Unconfirmed() (skew.Histogram, error) {
	return skew.Histogram{}, fmt.Errorf("bpf: histogram: %w", ErrNotSupported)
}

// Confirm does nothing on this platform.
func (f *Filter) Confirm(stream uint32, period uint64, rk *[wire.RKLen]byte, releaseAt int64) {}

// FirstArrival returns an error wrapping ErrNotSupported.
func (f *Filter) FirstArrival(stream uint32, period uint64) (int64, bool, error) {
	return 0, false, fmt.Errorf("bpf: first arrival: %w", ErrNotSupported)
}

// Close does nothing on this platform.
func (f *Filter) Close() error { return nil }
