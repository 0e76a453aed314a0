//go:build !linux

package mcast

import "fmt"

// Sender is not available off Linux.
type Sender struct{}

// NewSender returns an error wrapping ErrNotSupported.
func NewSender(g Group) (*Sender, error) {
	return nil, fmt.Errorf("mcast: sender: %w", ErrNotSupported)
}

// Group is the zero Group.
func (s *Sender) Group() Group { return Group{} }

// Send returns an error wrapping ErrNotSupported.
func (s *Sender) Send(dgs [][]byte) (int, error) { return 0, ErrNotSupported }

// Close does nothing.
func (s *Sender) Close() error { return nil }

// Conn is not available off Linux.
type Conn struct{}

// Listen returns an error wrapping ErrNotSupported.
func Listen(g Group) (*Conn, error) { return nil, fmt.Errorf("mcast: listen: %w", ErrNotSupported) }

// Group is the zero Group.
func (c *Conn) Group() Group { return Group{} }

// ReadBatch returns an error wrapping ErrNotSupported.
func (c *Conn) ReadBatch(ms []Message) (int, error) { return 0, ErrNotSupported }

// Close does nothing.
func (c *Conn) Close() error { return nil }
