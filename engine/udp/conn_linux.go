package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/wire"
)

// batch is the x/net PacketConn surface both address families share.
type batch interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// Sender sends datagrams to one group from one interface. It is safe for
// concurrent use.
type Sender struct {
	group Group
	conn  net.PacketConn
	pc    batch
	dst   *net.UDPAddr
	pool  sync.Pool // *[]ipv4.Message
}

// NewSender opens a UDP socket pinned to g's interface with g's hop limit,
// looping datagrams back to receivers on this host.
func NewSender(g Group) (*Sender, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(g.Ifname())
	if err != nil {
		return nil, fmt.Errorf("udp: sender for %v: interface %q: %w", g, g.Ifname(), err)
	}
	network := "udp4"
	if g.Addr.Addr().Is6() {
		network = "udp6"
	}
	// Send from the interface's own address, so that receivers (and
	// source-specific joins) see the interface as the source.
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(sourceAddr(ifi, g.Addr.Addr().Is4()), 0)))
	if err != nil {
		return nil, fmt.Errorf("udp: sender for %v: interface %q: %w", g, g.Ifname(), err)
	}
	s := &Sender{group: g, conn: conn, dst: net.UDPAddrFromAddrPort(g.Addr)}
	if g.Addr.Addr().Is4() {
		p := ipv4.NewPacketConn(conn)
		err = errors.Join(p.SetMulticastInterface(ifi), p.SetMulticastTTL(g.hops(ifi)), p.SetMulticastLoopback(true))
		s.pc = p
	} else {
		p := ipv6.NewPacketConn(conn)
		s.dst.Zone = ifi.Name
		err = errors.Join(p.SetMulticastInterface(ifi), p.SetMulticastHopLimit(g.hops(ifi)), p.SetMulticastLoopback(true))
		s.pc = p
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp: sender on %s: %w", ifi.Name, err)
	}
	return s, nil
}

// Group is the destination s was opened for.
func (s *Sender) Group() Group { return s.group }

// Send writes each datagram once to the group with as few sendmmsg calls
// as the kernel allows, and returns how many were sent. Every member of the
// group gets every datagram, so the type of the batch changes nothing.
func (s *Sender) Send(_ wire.Type, dgs [][]byte) (int, error) {
	mp, _ := s.pool.Get().(*[]ipv4.Message)
	if mp == nil {
		mp = new([]ipv4.Message)
	}
	defer s.pool.Put(mp)
	ms := *mp
	for len(ms) < len(dgs) {
		ms = append(ms, ipv4.Message{Buffers: make([][]byte, 1)})
	}
	*mp = ms
	ms = ms[:len(dgs)]
	for i, d := range dgs {
		ms[i].Buffers[0] = d
		ms[i].Addr = s.dst
	}
	sent := 0
	for sent < len(ms) {
		n, err := s.pc.WriteBatch(ms[sent:], 0)
		// sendmmsg's -1 on error comes through as n: it sent nothing.
		sent += max(n, 0)
		if err != nil {
			return sent, fmt.Errorf("udp: send to %v: %w", s.group.Addr, err)
		}
		if n == 0 {
			return sent, fmt.Errorf("udp: send to %v: no progress", s.group.Addr)
		}
	}
	return sent, nil
}

// Close closes the socket.
func (s *Sender) Close() error { return s.conn.Close() }

// Reader reads one UDP socket in batches (recvmmsg), with the kernel's
// arrival stamp of each datagram.
type Reader struct {
	conn net.PacketConn
	pc   batch
	ms   []ipv4.Message
	oob  [][]byte // one control-message buffer per slot of ms
}

// NewReader turns on arrival stamps (SO_TIMESTAMPNS) on c and reads it in
// batches; it takes ownership of c.
func NewReader(c *net.UDPConn) (*Reader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return nil, fmt.Errorf("udp: arrival stamps: %w", errors.Join(err, serr))
	}
	return newReader(c, c.LocalAddr().(*net.UDPAddr).IP.To4() != nil), nil
}

func newReader(c net.PacketConn, v4 bool) *Reader {
	if v4 {
		return &Reader{conn: c, pc: ipv4.NewPacketConn(c)}
	}
	return &Reader{conn: c, pc: ipv6.NewPacketConn(c)}
}

// Conn receives one group's datagrams on one interface.
type Conn struct {
	*Reader
	group Group
}

// Listen joins g on its interface with a socket bound to the group's
// address and port, so that it takes that group's datagrams only; any
// number of sockets on a host may listen to one group.
func Listen(g Group) (*Conn, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(g.Ifname())
	if err != nil {
		return nil, fmt.Errorf("udp: listen on %v: interface %q: %w", g, g.Ifname(), err)
	}
	conn, err := bindGroup(g.Addr, ifi)
	if err != nil {
		return nil, fmt.Errorf("udp: listen %v: %w", g.Addr, err)
	}
	c := &Conn{Reader: newReader(conn, g.Addr.Addr().Is4()), group: g}
	grp := &net.UDPAddr{IP: g.Addr.Addr().AsSlice()}
	var src *net.UDPAddr
	if g.Source.IsValid() {
		src = &net.UDPAddr{IP: g.Source.AsSlice()}
	}
	switch p := c.pc.(type) {
	case *ipv4.PacketConn:
		if src != nil {
			err = p.JoinSourceSpecificGroup(ifi, grp, src)
		} else {
			err = p.JoinGroup(ifi, grp)
		}
	case *ipv6.PacketConn:
		if src != nil {
			err = p.JoinSourceSpecificGroup(ifi, grp, src)
		} else {
			err = p.JoinGroup(ifi, grp)
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp: join %v on %s: %w", g, ifi.Name, err)
	}
	return c, nil
}

// bindGroup opens a UDP socket bound to the group address itself (the
// net package would bind a multicast address as the wildcard), so that
// unicast datagrams to the port never reach it.
func bindGroup(ap netip.AddrPort, ifi *net.Interface) (net.PacketConn, error) {
	v4 := ap.Addr().Is4()
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), ZoneId: uint32(ifi.Index), Addr: ap.Addr().As16()}
	if v4 {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := listenOptions(fd, v4); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %v: %w", ap, err)
	}
	f := os.NewFile(uintptr(fd), "udp "+ap.String())
	defer f.Close()
	return net.FilePacketConn(f)
}

// sourceAddr is the address a sender on ifi sends from: the interface's
// first address of the family, preferring global ones for IPv6; the
// unspecified address if it has none.
func sourceAddr(ifi *net.Interface, v4 bool) netip.Addr {
	var linkLocal netip.Addr
	if addrs, err := ifi.Addrs(); err == nil {
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil || pfx.Addr().Is4() != v4 {
				continue
			}
			ip := pfx.Addr()
			if ip.IsLinkLocalUnicast() {
				if !linkLocal.IsValid() {
					linkLocal = ip.WithZone(ifi.Name)
				}
				continue
			}
			return ip
		}
	}
	if linkLocal.IsValid() {
		return linkLocal
	}
	if v4 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// listenOptions lets many sockets share the group's port, asks for
// arrival stamps, and refuses datagrams of groups other sockets joined.
func listenOptions(fd int, v4 bool) error {
	err := errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
	)
	if v4 {
		err = errors.Join(err, unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0))
	} else if e := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0); e != nil && !errors.Is(e, unix.ENOPROTOOPT) {
		err = errors.Join(err, e)
	}
	return err
}

// Group is the group c joined.
func (c *Conn) Group() Group { return c.group }

// oobLen fits one SCM_TIMESTAMPNS control message.
var oobLen = unix.CmsgSpace(16)

// ReadBatch blocks until at least one datagram arrives, then fills up to
// len(ms) messages and returns how many. Each message needs its Buf set.
// It must not be called concurrently on one Reader; after Close it returns
// an error wrapping ErrClosed.
func (c *Reader) ReadBatch(ms []datagram.Message) (int, error) {
	if len(c.ms) < len(ms) {
		c.ms = make([]ipv4.Message, len(ms))
		c.oob = make([][]byte, len(ms))
		for i := range c.ms {
			c.ms[i].Buffers = make([][]byte, 1)
			c.oob[i] = make([]byte, oobLen)
		}
	}
	xs := c.ms[:len(ms)]
	for i := range ms {
		xs[i].Buffers[0] = ms[i].Buf
		xs[i].OOB = c.oob[i]
	}
	n, err := c.pc.ReadBatch(xs, 0)
	if err != nil {
		return 0, fmt.Errorf("udp: read %v: %w", c.conn.LocalAddr(), err)
	}
	for i := range n {
		m, x := &ms[i], &xs[i]
		m.N, m.Truncated = x.N, x.Flags&unix.MSG_TRUNC != 0
		m.Arrival = time.Time{}
		if ns, ok := ParseStamp(x.OOB[:x.NN]); ok {
			m.Arrival = time.Unix(0, ns)
		}
		m.From = netip.AddrPort{}
		if ua, ok := x.Addr.(*net.UDPAddr); ok {
			m.From = ua.AddrPort()
		}
	}
	return n, nil
}

// Close closes the socket (leaving any group); a blocked ReadBatch returns.
func (c *Reader) Close() error { return c.conn.Close() }

// SyscallConn gives access to the socket, to attach a filter to it.
func (c *Reader) SyscallConn() (syscall.RawConn, error) {
	return c.conn.(syscall.Conn).SyscallConn()
}

// LocalAddr is the socket's address.
func (c *Reader) LocalAddr() net.Addr { return c.conn.LocalAddr() }
