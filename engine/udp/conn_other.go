//go:build !linux

package udp

import (
	"fmt"
	"net"
	"syscall"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/wire"
)

// Sender is not available off Linux.
type Sender struct{}

// NewSender returns an error wrapping ErrNotSupported.
func NewSender(g Group) (*Sender, error) {
	return nil, fmt.Errorf("udp: sender: %w", ErrNotSupported)
}

// Group is the zero Group.
func (s *Sender) Group() Group { return Group{} }

// Send returns an error wrapping ErrNotSupported.
func (s *Sender) Send(_ wire.Type, dgs [][]byte) (int, error) { return 0, ErrNotSupported }

// Close does nothing.
func (s *Sender) Close() error { return nil }

// Reader is not available off Linux.
type Reader struct{}

// NewReader returns an error wrapping ErrNotSupported.
func NewReader(c *net.UDPConn) (*Reader, error) {
	return nil, fmt.Errorf("udp: reader: %w", ErrNotSupported)
}

// ReadBatch returns an error wrapping ErrNotSupported.
func (c *Reader) ReadBatch(ms []datagram.Message) (int, error) { return 0, ErrNotSupported }

// Close does nothing.
func (c *Reader) Close() error { return nil }

// SyscallConn returns an error wrapping ErrNotSupported.
func (c *Reader) SyscallConn() (syscall.RawConn, error) { return nil, ErrNotSupported }

// Conn is not available off Linux.
type Conn struct{ *Reader }

// Listen returns an error wrapping ErrNotSupported.
func Listen(g Group) (*Conn, error) { return nil, fmt.Errorf("udp: listen: %w", ErrNotSupported) }

// Group is the zero Group.
func (c *Conn) Group() Group { return Group{} }
