//go:build !linux

package bench

import (
	"context"
	"net"
)

// stampedConn is a plain TCP connection off Linux: no receive stamps.
type stampedConn struct{ net.Conn }

func dialStamped(ctx context.Context, addr string) (*stampedConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &stampedConn{c}, nil
}

func (c *stampedConn) stamp() int64 { return 0 }
