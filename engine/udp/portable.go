package udp

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/embargo-live/embargo/engine/datagram"
)

// The portable path receives through the standard library and x/net alone,
// so it builds and runs on every OS Go supports — macOS, iOS, Windows,
// Android, the BSDs — where the Linux path's recvmmsg, SO_TIMESTAMPNS and
// socket bound to the group address do not exist. Off Linux, Listen and
// NewReader are this path; on Linux it is ListenPortable and
// NewPortableReader, which the tests run beside the fast path.
//
// What it gives up, and what that costs:
//   - One datagram per read instead of a batch: a few more system calls a
//     period (about 20 datagrams), far below what a device notices.
//   - No kernel arrival stamps: each Message's Arrival is zero, and the
//     receiver stamps the datagram when it reads it (receiver.Event says
//     so), which adds the scheduling delay between arrival and read to the
//     measured skew — never to what is released or when.
//   - The socket is bound to the group's port on the wildcard address (the
//     standard library's multicast listener; Windows cannot bind a
//     multicast address), so it can also see unicast datagrams to that port
//     and other groups joined on it by this process. The receiver drops
//     what is not for its streams or fails verification, as it does any
//     stray datagram.
//   - A datagram that fills Buf exactly is reported as truncated: the
//     receiver's buffers are larger than any valid datagram, so only an
//     oversized one can fill them.

// PortableReader reads one UDP socket a datagram at a time, with no
// kernel arrival stamps.
type PortableReader struct {
	conn *net.UDPConn
}

// NewPortableReader reads c; it takes ownership of c.
func NewPortableReader(c *net.UDPConn) *PortableReader { return &PortableReader{conn: c} }

// ReadBatch blocks until a datagram arrives and fills ms[0] with it (so
// it returns 1). Each message needs its Buf set. It must not be called
// concurrently; after Close it returns an error wrapping net.ErrClosed.
func (c *PortableReader) ReadBatch(ms []datagram.Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	m := &ms[0]
	n, from, err := c.conn.ReadFromUDPAddrPort(m.Buf)
	if err != nil {
		return 0, fmt.Errorf("udp: read %v: %w", c.conn.LocalAddr(), err)
	}
	m.N, m.Truncated, m.Arrival = n, n == len(m.Buf), time.Time{}
	m.From = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return 1, nil
}

// Close closes the socket (leaving any group); a blocked ReadBatch returns.
func (c *PortableReader) Close() error { return c.conn.Close() }

// SyscallConn gives access to the socket.
func (c *PortableReader) SyscallConn() (syscall.RawConn, error) { return c.conn.SyscallConn() }

// LocalAddr is the socket's address.
func (c *PortableReader) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// PortableConn receives one group's datagrams on one interface through the
// portable path.
type PortableConn struct {
	*PortableReader
	group Group
}

// Group is the group c joined.
func (c *PortableConn) Group() Group { return c.group }

// ListenPortable joins g on its interface — any-source, or source-specific
// when g names a source — with a socket many listeners on a host may share.
func ListenPortable(g Group) (*PortableConn, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(g.Ifname())
	if err != nil {
		return nil, fmt.Errorf("udp: listen on %v: interface %q: %w", g, g.Ifname(), err)
	}
	network := "udp6"
	if g.Addr.Addr().Is4() {
		network = "udp4"
	}
	grp := &net.UDPAddr{IP: g.Addr.Addr().AsSlice(), Port: int(g.Addr.Port())}
	// ListenMulticastUDP sets the address-reuse options each OS needs for
	// many listeners on one port, binds the port and joins grp any-source.
	conn, err := net.ListenMulticastUDP(network, ifi, grp)
	if err != nil {
		return nil, fmt.Errorf("udp: listen %v on %s: %w", g, ifi.Name, err)
	}
	if g.Source.IsValid() {
		// Source-specific: leave the any-source join, join (S,G) instead.
		src, grpOnly := &net.UDPAddr{IP: g.Source.AsSlice()}, &net.UDPAddr{IP: grp.IP}
		if g.Addr.Addr().Is4() {
			p := ipv4.NewPacketConn(conn)
			err = p.LeaveGroup(ifi, grpOnly)
			if err == nil {
				err = p.JoinSourceSpecificGroup(ifi, grpOnly, src)
			}
		} else {
			p := ipv6.NewPacketConn(conn)
			err = p.LeaveGroup(ifi, grpOnly)
			if err == nil {
				err = p.JoinSourceSpecificGroup(ifi, grpOnly, src)
			}
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("udp: join %v on %s: %w", g, ifi.Name, err)
		}
	}
	return &PortableConn{PortableReader: NewPortableReader(conn), group: g}, nil
}
