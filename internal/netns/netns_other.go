//go:build !linux

package netns

import (
	"fmt"
	"testing"
)

// Available always reports ErrNotSupported: network namespaces are Linux's.
func Available() error { return fmt.Errorf("netns: %w", ErrNotSupported) }

// New skips the test: labs need Linux network namespaces.
func New(t testing.TB, n int) *Lab {
	t.Helper()
	if n < 1 || n > maxHosts {
		t.Fatalf("netns: lab of %d hosts: want 1 to %d", n, maxHosts)
	}
	t.Skip(Available())
	return nil
}

// Build returns an error wrapping ErrNotSupported.
func Build(n int) (*Lab, error) { return nil, Available() }

// Close does nothing.
func (l *Lab) Close() error { return nil }

// Do returns an error wrapping ErrNotSupported without calling f.
func (h *Host) Do(f func() error) error {
	return fmt.Errorf("netns: do in %s: %w", h.Name, ErrNotSupported)
}
