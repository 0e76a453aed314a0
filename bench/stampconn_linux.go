package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/udp"
)

// stampedConn is a TCP connection whose reads record the kernel's receive
// stamp (SO_TIMESTAMPNS: for TCP, that of the last segment a read
// returned), so that a peer's subscriber has a kernel arrival time as
// embargo's receivers do.
type stampedConn struct {
	*net.TCPConn
	raw  syscall.RawConn
	oob  []byte
	last atomic.Int64 // UTC ns of the latest read's data; 0: none yet
}

// dialStamped dials addr over TCP with receive stamps on.
func dialStamped(ctx context.Context, addr string) (*stampedConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	raw, err := tc.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) }); err != nil || serr != nil {
		c.Close()
		return nil, errors.Join(err, serr)
	}
	return &stampedConn{TCPConn: tc, raw: raw, oob: make([]byte, unix.CmsgSpace(16))}, nil
}

// Read reads as net.Conn does, keeping the data's receive stamp.
func (c *stampedConn) Read(b []byte) (int, error) {
	var n, oobn int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, c.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	if at, ok := udp.ParseStamp(c.oob[:oobn]); ok {
		c.last.Store(at)
	}
	return n, nil
}

// stamp is the receive stamp (UTC ns) of the latest data read; 0: none.
func (c *stampedConn) stamp() int64 { return c.last.Load() }
