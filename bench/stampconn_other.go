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

// stampedPacketConn is a plain UDP socket off Linux: no receive stamps.
type stampedPacketConn struct{ *net.UDPConn }

func listenStamped() (*stampedPacketConn, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	return &stampedPacketConn{c}, nil
}

func (c *stampedPacketConn) stamp() int64 { return 0 }
