package unicast

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/wire"
)

// Server is an edge's unicast side: it answers the session protocol on
// Listen and, as an edge.Sender, fans each datagram out to the subscribers
// of its stream. Send is safe for concurrent use.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	sessions *Sessions
	socks    []*socket
	v6       bool

	// Fan-out plans, one set for RELEASEs and one for everything else, so
	// that a long carousel round never holds the plan a release needs.
	release, announce *planner

	sent, sendErrs, catchUp atomic.Uint64
	serving                 atomic.Bool
	launch                  string
	closeOnce               sync.Once

	// Catch-up is sent by its own goroutine, off the receive loops, under
	// byte budgets (catchUpLoop).
	catchUps       chan catchUpJob
	catchUpBytes   atomic.Uint64
	catchUpRefused sync.Map // reason → *atomic.Uint64
}

// catchUpJob is a catch-up a subscription asked for.
type catchUpJob struct {
	to      netip.AddrPort
	streams []uint32
	n       int
}

// socket is one of the server's SO_REUSEPORT sockets on Listen.
type socket struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	r    *udp.Reader
}

// NewServer opens cfg.Senders sockets on cfg.Listen. Run serves them.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg.defaults()
	sessions, err := NewSessions(cfg.Sessions)
	if err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		return nil, fmt.Errorf("%w: no clock (catch-up checks it)", ErrConfig)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, sessions: sessions, v6: cfg.Listen.Addr().Is6(), catchUps: make(chan catchUpJob, catchUpQueue)}
	listen := cfg.Listen
	if err := claim(listen, s.v6); err != nil {
		return nil, fmt.Errorf("unicast: listen %v: %w (another edge serves it: give each edge its own -unicast address)", listen, err)
	}
	for i := range cfg.Senders {
		c, err := listenReusePort(listen, s.v6)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("unicast: listen %v: %w", listen, err)
		}
		if i == 0 {
			// Port 0 picks a port; the other sockets must share it.
			listen = c.LocalAddr().(*net.UDPAddr).AddrPort()
		}
		rc, err := c.SyscallConn()
		if err != nil {
			c.Close()
			s.Close()
			return nil, err
		}
		r, err := udp.NewReader(c)
		if err != nil {
			c.Close()
			s.Close()
			return nil, err
		}
		s.socks = append(s.socks, &socket{conn: c, rc: rc, r: r})
	}
	s.cfg.Listen = listen
	s.release = newPlanner(s, cfg.Priority)
	s.announce = newPlanner(s, 0)
	s.launch = probeLaunchTime(s.v6)
	return s, nil
}

// recvBuffer is the receive buffer each server socket asks for: about a
// second of session traffic from a large audience (50,000 subscribers
// keeping alive every 10 s send 5,000 datagrams a second), for while a
// fan-out pass holds the CPUs and the readers wait. The usual default
// (net.core.rmem_default, 208 KiB: some 250 small datagrams) overflowed
// in every pass of faults.TestLoad and lost 7–9 % of its keepalives.
const recvBuffer = 4 << 20

// listenReusePort opens a UDP socket on addr that other sockets may share,
// with the don't-fragment bit set: it spares the kernel IP-ID work per
// datagram, and every embargo datagram fits the path anyway.
func listenReusePort(addr netip.AddrPort, v6 bool) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			// Beyond net.core.rmem_max only with CAP_NET_ADMIN; without
			// it, as much as rmem_max allows. Best effort either way.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuffer)
			}
			// DF is an optimisation: a kernel that refuses it still works.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
			if v6 {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
			}
		})
		return errors.Join(err, serr)
	}}
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	c, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// claim fails with EADDRINUSE if any socket, of this process or another,
// is bound to addr. The server's own sockets share addr through
// SO_REUSEPORT, which would just as silently let a second edge (same
// user) share it and take half of every subscriber's traffic: a socket
// bound without the option, closed at once, finds out first.
func claim(addr netip.AddrPort, v6 bool) error {
	if addr.Port() == 0 {
		return nil // the kernel picks a free port
	}
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	return c.Close()
}

// probeLaunchTime says whether datagrams could be prestaged with a launch
// time (SO_TXTIME on CLOCK_TAI), trying the option on a throwaway socket.
// Prestaging also needs an ETF or fq qdisc to hold datagrams until then;
// without one the kernel sends at once, which for a RELEASE would be early,
// so this edge sends at the instant.
func probeLaunchTime(v6 bool) string {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Sprintf("unavailable: %v; sending at the instant", err)
	}
	defer unix.Close(fd)
	// struct sock_txtime { clockid_t clockid; __u32 flags; }
	var txtime [8]byte
	binary.NativeEndian.PutUint32(txtime[0:], unix.CLOCK_TAI)
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_TXTIME, string(txtime[:])); err != nil {
		return fmt.Sprintf("unavailable: SO_TXTIME refused (%v); sending at the instant", err)
	}
	return "unavailable: SO_TXTIME works, but prestaging needs an ETF or fq qdisc on the egress device, which this edge does not set up; sending at the instant"
}

// SetHistory sets where catch-up comes from: the edge that sends through
// this server, which exists only after the server. edge.New calls it.
func (s *Server) SetHistory(h edge.History) { s.cfg.History = h }

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.cfg.Listen }

// Sessions is the server's subscriber table.
func (s *Server) Sessions() *Sessions { return s.sessions }

// Run answers session traffic and drops expired subscriptions until ctx
// ends (then it returns nil) or a socket fails (then it returns that
// error); either way it closes the server. Edge.Run runs it.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("unicast: serving", "addr", s.cfg.Listen, "senders", len(s.socks), "launch time", s.launch)
	s.serving.Store(true)
	defer s.serving.Store(false)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() { sweep(ctx, s.sessions) })
	wg.Go(func() { s.catchUpLoop(ctx) })
	for _, sk := range s.socks {
		wg.Go(func() {
			if err := s.serve(sk); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("unicast: serve %v: %w", s.cfg.Listen, err))
			}
		})
	}
	<-ctx.Done()
	s.Close()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// Serving reports whether Run is answering subscribers.
func (s *Server) Serving() bool { return s.serving.Load() }

// Close stops the fan-out threads and closes every socket; a Send after
// Close returns net.ErrClosed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		for _, p := range []*planner{s.release, s.announce} {
			if p != nil {
				p.close()
			}
		}
		for _, sk := range s.socks {
			sk.conn.Close()
		}
	})
	return nil
}

func (s *Server) serve(sk *socket) error {
	ms := make([]datagram.Message, 16)
	for i := range ms {
		ms[i].Buf = make([]byte, wire.MaxDatagram+1)
	}
	out := make([]byte, wire.MaxDatagram)
	for {
		n, err := sk.r.ReadBatch(ms)
		if err != nil {
			return err
		}
		for _, m := range ms[:n] {
			// A datagram too long for the buffer arrives cut to
			// MaxDatagram+1 bytes (m.Truncated): Handle refuses it as
			// oversized, counts it and never answers it.
			now := time.Now()
			a := s.sessions.Handle(m.Buf[:m.N], m.From, now, out)
			if a.Reply != nil {
				if _, err := sk.conn.WriteToUDPAddrPort(a.Reply, m.From); err != nil {
					s.sendErrs.Add(1)
				}
			}
			if a.Subscribed && a.CatchUp > 0 && s.cfg.History != nil {
				// a.Streams is the subscription's interned set: read only.
				select {
				case s.catchUps <- catchUpJob{to: m.From, streams: a.Streams, n: a.CatchUp}:
				default:
					s.refuseCatchUp("queue-full")
				}
			}
		}
	}
}

// catchUpLoop sends the queued catch-ups until ctx ends, each only if it
// fits the global and its site's budget of bytes per second.
func (s *Server) catchUpLoop(ctx context.Context) {
	global := newLimiter(s.cfg.CatchUpBudget, s.cfg.CatchUpBudget)
	perSite := newLimiter(s.cfg.CatchUpPerAddress, s.cfg.CatchUpPerAddress)
	var everyone [16]byte
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.catchUps:
			dgs := s.catchUpFor(j.streams, j.n)
			var size float64
			for _, d := range dgs {
				size += float64(len(d))
			}
			now := time.Now()
			site := siteOf(j.to.Addr().As16(), s.sessions.cfg.PrefixBits)
			if ok, _ := perSite.takeN(site, now, size); !ok {
				s.refuseCatchUp("address-budget")
				continue
			}
			if ok, _ := global.takeN(everyone, now, size); !ok {
				s.refuseCatchUp("global-budget")
				continue
			}
			for _, d := range dgs {
				if _, err := s.socks[0].conn.WriteToUDPAddrPort(d, j.to); err != nil {
					s.sendErrs.Add(1)
					continue
				}
				s.catchUp.Add(1)
				s.catchUpBytes.Add(uint64(len(d)))
			}
		}
	}
}

func (s *Server) refuseCatchUp(reason string) {
	c, _ := s.catchUpRefused.LoadOrStore(reason, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(1)
}

// catchUpFor is what a new subscriber of streams is sent: the last n
// released periods of each stream (ANNOUNCE shards, then the RELEASE
// marked as catch-up) and the ANNOUNCEs of periods still to come — never
// a RELEASE whose releaseAt the clock's earliest time has not passed.
func (s *Server) catchUpFor(streams []uint32, n int) [][]byte {
	now, err := s.cfg.Clock.Now()
	if err != nil {
		return nil
	}
	return edge.CatchUp(s.cfg.History, streams, n, now.Earliest)
}

// Send fans each datagram out to the subscribers of its stream and returns
// how many datagrams it was given that went to every subscriber. RELEASEs
// (typ wire.TypeRelease) and ANNOUNCEs have plans of their own, so that a
// long carousel round never holds the plan a release needs.
func (s *Server) Send(typ wire.Type, dgs [][]byte) (int, error) {
	var firstErr error
	done := 0
	p := s.announce
	if typ == wire.TypeRelease {
		p = s.release
	}
	for _, d := range dgs {
		h, err := wire.Peek(d)
		if err != nil {
			return done, err
		}
		if err := p.send(h.Stream, d); err != nil && firstErr == nil {
			firstErr = err
		} else if err == nil {
			done++
		}
	}
	return done, firstErr
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	refused := map[string]uint64{}
	s.catchUpRefused.Range(func(k, v any) bool {
		refused[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return ServerStats{
		Sessions: s.sessions.Stats(), Sent: s.sent.Load(), SendErrors: s.sendErrs.Load(),
		CatchUp: s.catchUp.Load(), CatchUpBytes: s.catchUpBytes.Load(), CatchUpRefused: refused, LaunchTime: s.launch,
	}
}
