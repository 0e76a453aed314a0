package webedge

import (
	"net"
	"net/netip"
	"sync"
)

// pendingSlack is how many TCP connections one address may hold beyond
// its sessions: requests on their way to becoming a session.
const pendingSlack = 16

// Listener wraps ln, the WebSocket endpoint's, so that one IP address (or
// IPv6 prefix) holds at most as many TCP connections as it may hold
// sessions (Config.MaxPerAddress, MaxPerPrefix) and a few more: a host
// cannot tie the endpoint up with connections that never become
// sessions — slow requests, or TLS handshakes never finished. A
// connection over the limit is closed as it is accepted, and counted
// (Stats.RefusedConnections). Wrap ln before TLS.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, s: s}
}

type limitedListener struct {
	net.Listener
	s *Server
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		from := ipOf(c.RemoteAddr())
		if l.s.connOpened(from) {
			return &countedConn{Conn: c, s: l.s, from: from}, nil
		}
		l.s.refusedConns.Add(1)
		c.Close()
	}
}

// countedConn gives its place back when closed (once).
type countedConn struct {
	net.Conn
	s    *Server
	from netip.Addr
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.s.connClosed(c.from) })
	return c.Conn.Close()
}

// connOpened counts a TCP connection from addr in, if its address and
// prefix have room.
func (s *Server) connOpened(addr netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tcp.hold(s, addr, pendingSlack) {
		return false
	}
	s.tcpOpen++
	return true
}

func (s *Server) connClosed(addr netip.Addr) {
	s.mu.Lock()
	s.tcp.count(s, addr, -1)
	s.tcpOpen--
	s.mu.Unlock()
}
