//go:build !linux

package unicast

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/wire"
)

// Server is not available off Linux.
type Server struct{}

// NewServer returns an error wrapping ErrNotSupported.
func NewServer(cfg ServerConfig) (*Server, error) {
	return nil, fmt.Errorf("unicast: %w", ErrNotSupported)
}

// Addr is the zero address.
func (s *Server) Addr() netip.AddrPort { return netip.AddrPort{} }

// Sessions is nil.
func (s *Server) Sessions() *Sessions { return nil }

// Run returns ErrNotSupported.
func (s *Server) Run(ctx context.Context) error { return ErrNotSupported }

// Close does nothing.
func (s *Server) Close() error { return nil }

// Serving reports false: nothing serves off Linux.
func (s *Server) Serving() bool { return false }

// Send returns ErrNotSupported.
func (s *Server) Send(_ wire.Type, dgs [][]byte) (int, error) { return 0, ErrNotSupported }

// Stats is empty.
func (s *Server) Stats() ServerStats { return ServerStats{} }

// SetHistory does nothing.
func (s *Server) SetHistory(h edge.History) {}
