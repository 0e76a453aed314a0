//go:build !linux

package netns

import "fmt"

// Available always reports ErrNotSupported: network namespaces are Linux's.
func Available() error { return fmt.Errorf("netns: %w", ErrNotSupported) }

// Build returns an error wrapping ErrNotSupported (or naming a size out of
// range, as on Linux).
func Build(n int, log func(msg string)) (*Lab, error) {
	if n < 1 || n > maxHosts {
		return nil, fmt.Errorf("netns: lab of %d hosts: want 1 to %d", n, maxHosts)
	}
	return nil, Available()
}

// Close does nothing.
func (l *Lab) Close() error { return nil }

// Do returns an error wrapping ErrNotSupported without calling f.
func (h *Host) Do(f func() error) error {
	return fmt.Errorf("netns: do in %s: %w", h.Name, ErrNotSupported)
}
