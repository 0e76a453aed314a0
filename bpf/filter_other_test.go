//go:build !linux

package bpf

import (
	"errors"
	"testing"
)

func TestNotSupported(t *testing.T) {
	if err := Available(); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Available: %v, want ErrNotSupported", err)
	}
	if _, err := NewFilter(); !errors.Is(err, ErrNotSupported) {
		t.Errorf("NewFilter: %v, want ErrNotSupported", err)
	}
	if _, err := NewFilter(WithLoss(2)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("NewFilter(WithLoss(2)): %v, want ErrInvalidOption", err)
	}
}
