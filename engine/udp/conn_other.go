//go:build !linux

package udp

import (
	"fmt"
	"net"

	"github.com/embargo-live/embargo/wire"
)

// Off Linux, receiving is the portable path (portable.go): Listen joins a
// group and NewReader reads any UDP socket, through the standard library
// and x/net. Sending — the edge's job, which runs on Linux — is not
// available.

// Reader reads one UDP socket a datagram at a time.
type Reader = PortableReader

// NewReader reads c; it takes ownership of c.
func NewReader(c *net.UDPConn) (*Reader, error) { return NewPortableReader(c), nil }

// Conn receives one group's datagrams on one interface.
type Conn = PortableConn

// Listen joins g on its interface (see ListenPortable).
func Listen(g Group) (*Conn, error) { return ListenPortable(g) }

// Sender is not available off Linux: edges run on Linux.
type Sender struct{}

// NewSender returns an error wrapping ErrNotSupported.
func NewSender(g Group) (*Sender, error) {
	return nil, fmt.Errorf("udp: sender: %w (edges run on Linux)", ErrNotSupported)
}

// Group is the zero Group.
func (s *Sender) Group() Group { return Group{} }

// Send returns an error wrapping ErrNotSupported.
func (s *Sender) Send(_ wire.Type, dgs [][]byte) (int, error) { return 0, ErrNotSupported }

// Close does nothing.
func (s *Sender) Close() error { return nil }
