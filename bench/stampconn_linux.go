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
	raw, err := stampsOn(tc)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &stampedConn{TCPConn: tc, raw: raw, oob: make([]byte, unix.CmsgSpace(16))}, nil
}

// stampsOn turns on the kernel's receive stamps (SO_TIMESTAMPNS) for c
// and returns its raw connection.
func stampsOn(c syscall.Conn) (syscall.RawConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) }); err != nil || serr != nil {
		return nil, errors.Join(err, serr)
	}
	return raw, nil
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

// stampedPacketConn is a UDP socket whose reads record the kernel's
// receive stamp of the latest datagram, for a WebTransport subscriber.
// QUIC runs on it as on any net.PacketConn, one datagram a read (it has
// no ReadMsgUDP, so quic-go neither batches nor parses its control data).
// A subscriber's RELEASE was carried by the latest packet read before it
// was handed over, or an earlier one: its stamp is never earlier than the
// arrival it stands for.
type stampedPacketConn struct {
	net.PacketConn
	udp  *net.UDPConn
	oob  []byte // quic-go reads from one goroutine
	last atomic.Int64
}

// listenStamped opens a loopback UDP socket with receive stamps on.
func listenStamped() (*stampedPacketConn, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	if _, err := stampsOn(c); err != nil {
		c.Close()
		return nil, err
	}
	return &stampedPacketConn{PacketConn: c, udp: c, oob: make([]byte, unix.CmsgSpace(16))}, nil
}

// ReadFrom reads one datagram, keeping its receive stamp.
func (c *stampedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, oobn, _, addr, err := c.udp.ReadMsgUDP(b, c.oob)
	if err != nil {
		return 0, nil, err
	}
	if at, ok := udp.ParseStamp(c.oob[:oobn]); ok {
		c.last.Store(at)
	}
	return n, addr, nil
}

// The socket's buffers and descriptor, for quic-go's set-up.
func (c *stampedPacketConn) SetReadBuffer(n int) error             { return c.udp.SetReadBuffer(n) }
func (c *stampedPacketConn) SetWriteBuffer(n int) error            { return c.udp.SetWriteBuffer(n) }
func (c *stampedPacketConn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }

// stamp is the receive stamp (UTC ns) of the latest datagram read; 0: none.
func (c *stampedPacketConn) stamp() int64 { return c.last.Load() }
