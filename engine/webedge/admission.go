package webedge

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// Admission: who may open a session — a subscription token where tokens
// are required, the Admit hook, the edge's session limit, and the limits
// per IP address and IPv6 prefix (Config.MaxPerAddress, MaxPerPrefix) —
// and the loud-but-bounded lines that say why browsers were refused.

// client is who a session is for: the address it came from and, where
// tokens are required, the viewer its token names.
type client struct {
	addr   netip.Addr
	viewer [8]byte
	token  bool // viewer is a verified token's
}

// admit refuses a request when the edge holds MaxConns browsers, its
// address, prefix or viewer holds its most, or the Admit hook says no,
// answering it; it reports whether r may go on, and for whom.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (client, bool) {
	cl := client{addr: remoteAddr(r)}
	tok, err := s.checkToken(r)
	if err != nil {
		s.refused.Add(1)
		s.badToken.Add(1)
		refuse(w, r, "not admitted: "+err.Error(), http.StatusForbidden)
		return cl, false
	}
	cl.viewer, cl.token = tok.Viewer, s.cfg.Tokens != nil
	if s.cfg.Admit != nil {
		if err := s.cfg.Admit(r); err != nil {
			s.refused.Add(1)
			refuse(w, r, "not admitted: "+err.Error(), http.StatusForbidden)
			return cl, false
		}
	}
	s.mu.RLock()
	why, ok := s.room(cl)
	s.mu.RUnlock()
	if !ok {
		code := http.StatusTooManyRequests
		if why == edgeFull {
			code = http.StatusServiceUnavailable
		}
		refuse(w, r, why, code)
		return cl, false
	}
	return cl, true
}

// edgeFull is why a session is refused when the edge holds MaxConns.
const edgeFull = "edge full: try another edge"

// room says whether the edge may hold one more session for cl, and if not
// why, counting the refusal. s.mu is held (read or write).
func (s *Server) room(cl client) (string, bool) {
	if len(s.conns) >= s.cfg.MaxConns {
		s.refused.Add(1)
		return edgeFull, false
	}
	if why := s.crowded(cl.addr); why != "" {
		s.refused.Add(1)
		s.refusedAddr.Add(1)
		s.noteRefused(why)
		return why, false
	}
	if n := s.viewers[cl.viewer]; cl.token && n >= s.cfg.MaxPerViewer {
		s.refused.Add(1)
		s.refusedViewer.Add(1)
		why := fmt.Sprintf("this viewer's subscription token holds %d sessions on this edge already: the edge's limit for one viewer", n)
		s.noteRefused(why)
		return why, false
	}
	return "", true
}

// refuse answers r with code and why. Over HTTP/1.1 it also closes the
// connection rather than keep it alive: idle, it would hold one of its
// address's few places on the endpoint (Listener). HTTP/3 has no such
// header, and a refused WebTransport request ends only its stream.
func refuse(w http.ResponseWriter, r *http.Request, why string, code int) {
	if r.ProtoMajor < 2 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, why, code)
}

// noteRefused logs a session refused for its address, prefix or viewer (why),
// loud but bounded: the first, then a line a minute at most.
func (s *Server) noteRefused(why string) {
	if why == "" {
		return
	}
	if n, ok := s.crowdedLog.note(time.Now()); ok {
		s.log.Warn("browsers: session refused: "+why+"; if browsers come through a proxy, raise -browser-max-per-address and -browser-max-per-prefix to -browser-max", "refused since the last line", n)
	}
}

// bounded rate-limits a log line: note says whether to log now (the first
// event, then one a minute at most) and how many events came since the
// last line.
type bounded struct {
	mu   sync.Mutex
	last time.Time
	n    int
}

func (b *bounded) note(now time.Time) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	if !b.last.IsZero() && now.Sub(b.last) < time.Minute {
		return 0, false
	}
	n := b.n
	b.last, b.n = now, 0
	return n, true
}

// remoteAddr is the IP address r came from; the zero Addr if it does not
// parse.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ipOf is the IP address of a TCP or UDP address (a connection's peer),
// or the zero Addr.
func ipOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// prefixOf is the IPv6 prefix addr counts against, or the zero Addr for
// an IPv4 address (counted by its address alone).
func (s *Server) prefixOf(addr netip.Addr) netip.Addr {
	if !addr.Is6() {
		return netip.Addr{}
	}
	return netip.PrefixFrom(addr, s.cfg.PrefixBits).Masked().Addr()
}

// crowded says why a new session from addr would be one too many for its
// address or prefix, or "". s.mu is held.
func (s *Server) crowded(addr netip.Addr) string {
	switch n, prefix := s.sessions.full(s, addr, 0); {
	case n == 0:
		return ""
	case prefix.IsValid():
		return fmt.Sprintf("%d sessions from %v/%d already: the edge's limit for one IPv6 prefix", n, prefix, s.cfg.PrefixBits)
	default:
		return fmt.Sprintf("%d sessions from %v already: the edge's limit for one address", n, addr)
	}
}

// siteCounts counts what IP addresses, and IPv6 prefixes, hold.
type siteCounts struct {
	perAddr, perPrefix map[netip.Addr]int
}

// full says whether addr's address or IPv6 prefix already holds its
// limit (Config.MaxPerAddress, MaxPerPrefix) and slack more in c: how
// many it holds (0: neither is full) and, if it is the prefix, which.
// s.mu is held.
func (c siteCounts) full(s *Server, addr netip.Addr, slack int) (int, netip.Addr) {
	if !addr.IsValid() {
		return 0, netip.Addr{}
	}
	if n := c.perAddr[addr]; n >= s.cfg.MaxPerAddress+slack {
		return n, netip.Addr{}
	}
	if p := s.prefixOf(addr); p.IsValid() && c.perPrefix[p] >= s.cfg.MaxPerPrefix+slack {
		return c.perPrefix[p], p
	}
	return 0, netip.Addr{}
}

// hold counts one more from addr in if its address and prefix hold fewer
// than their limits and slack more. s.mu is held.
func (c siteCounts) hold(s *Server, addr netip.Addr, slack int) bool {
	if n, _ := c.full(s, addr, slack); n > 0 {
		return false
	}
	c.count(s, addr, 1)
	return true
}

func newSiteCounts() siteCounts {
	return siteCounts{perAddr: make(map[netip.Addr]int), perPrefix: make(map[netip.Addr]int)}
}

// count counts one from addr in (n = 1) or out (n = −1), by s's prefix
// length. s.mu is held.
func (c siteCounts) count(s *Server, addr netip.Addr, n int) {
	if !addr.IsValid() {
		return
	}
	add := func(m map[netip.Addr]int, k netip.Addr) {
		if m[k] += n; m[k] <= 0 {
			delete(m, k)
		}
	}
	add(c.perAddr, addr)
	if p := s.prefixOf(addr); p.IsValid() {
		add(c.perPrefix, p)
	}
}

// site counts a session for cl in (n = 1) or out (n = −1), by its
// address, prefix and viewer. s.mu is held.
func (s *Server) site(cl client, n int) {
	s.sessions.count(s, cl.addr, n)
	if cl.token {
		if s.viewers[cl.viewer] += n; s.viewers[cl.viewer] <= 0 {
			delete(s.viewers, cl.viewer)
		}
	}
}

// checkToken verifies r's subscription token when tokens are required.
func (s *Server) checkToken(r *http.Request) (wire.Token, error) {
	var tok wire.Token
	if s.cfg.Tokens == nil {
		return tok, nil
	}
	q := r.URL.Query().Get(TokenParam)
	if q == "" {
		return tok, fmt.Errorf("no subscription token: add ?%s= with the licence's Embargo-Subscription-Token", TokenParam)
	}
	b, err := base64.StdEncoding.DecodeString(q)
	if err != nil {
		return tok, fmt.Errorf("subscription token is not standard base64: pass the licence's Embargo-Subscription-Token as it is")
	}
	now, err := s.cfg.Clock.Now()
	if err != nil {
		return tok, fmt.Errorf("the edge's clock: %w", err)
	}
	if tok, err = s.cfg.Tokens.VerifyToken(b, now.Latest, int64(s.cfg.TokenMaxLife)); err != nil {
		return tok, fmt.Errorf("subscription token refused (%w): fetch the licence again for a fresh one", err)
	}
	return tok, nil
}
