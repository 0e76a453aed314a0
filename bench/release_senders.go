package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/engine/webedge"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// This file holds the sender side of each release variant.

// releaseGroup is the loopback group of the multicast variant: a port of
// its own, so that other runs on udp.Loopback do not reach its subscribers.
var releaseGroup = udp.Group{Addr: netip.AddrPortFrom(udp.Loopback.Addr.Addr(), 7191), Hops: udp.Loopback.Hops}

// natsSubject is the subject the NATS variant publishes on.
const natsSubject = "embargo.bench.release"

func openReleaseSender(cfg *ReleaseConfig) (releaseSender, error) {
	spec := subscriberSpec{Variant: cfg.Variant, Resource: cfg.Resource, TAIOffset: taiOffset(cfg.Clock)}
	switch cfg.Variant {
	case ReleaseMulticast, ReleaseUnicast, BrowserWebSocket, BrowserWebTransport:
		return openEdgeSender(cfg, spec)
	case PeerNATS:
		return openNATSSender(cfg, spec)
	default:
		return openWebSocketSender(cfg, spec)
	}
}

// taiOffset is the offset that converts the subscribers' stamps to c's
// time scale.
func taiOffset(c ptp.Clock) ptp.TAIOffset {
	if sys, ok := c.(*ptp.System); ok {
		return sys.TAIOffset()
	}
	return ptp.DefaultTAIOffset
}

// edgeSender is one embargo edge releasing to a group or to its unicast
// server's subscribers.
type edgeSender struct {
	cfg     *ReleaseConfig
	s       subscriberSpec
	org     *origin.Origin
	edge    *edge.Edge
	server  *unicast.Server
	web     *webedge.Server // the browser variants
	reports chan edge.Report
	cancel  context.CancelFunc
	done    chan error
	closers []func() error
}

func openEdgeSender(cfg *ReleaseConfig, spec subscriberSpec) (*edgeSender, error) {
	org, _, err := origin.Generate()
	if err != nil {
		return nil, err
	}
	spec.Origin, spec.Stream = org.PublicKey(), 1
	e := &edgeSender{cfg: cfg, s: spec, org: org, reports: make(chan edge.Report, 1), done: make(chan error, 1)}
	var sender edge.Sender
	if cfg.Variant == ReleaseMulticast {
		s, err := udp.NewSender(releaseGroup)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, s.Close)
		sender, e.s.Addr = s, releaseGroup.Addr.String()
	} else if cfg.Variant == BrowserWebSocket || cfg.Variant == BrowserWebTransport {
		sender, err = e.openBrowsers(spec.Stream)
		if err != nil {
			e.close()
			return nil, err
		}
	} else {
		srv, err := unicast.NewServer(unicast.ServerConfig{
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Priority: cfg.priority(), Clock: cfg.Clock, Logger: slog.New(slog.DiscardHandler),
			// The subscribers subscribe from one loopback address for
			// every 20,000 (loopbackSource), as from behind a large NAT:
			// all of them at once, and each renews; the per-address limits
			// (admission, PROTOCOL.md §4.12) would hold all but 64 a second.
			Sessions: unicast.SessionConfig{Streams: []uint32{spec.Stream}, MaxSubscribers: cfg.Subscribers, MaxPerAddress: cfg.Subscribers,
				SubscribeRate: cfg.Subscribers, SubscribeBurst: cfg.Subscribers},
		})
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, srv.Close)
		sender, e.server, e.s.Addr = srv, srv, srv.Addr().String()
	}
	waiter, head := edgeWaiter(cfg.priority())
	e.edge, err = edge.New(edge.Config{
		ID: 1, Clock: cfg.Clock, Trusted: seal.NewKeyRing(org.PublicKey()), Senders: []edge.Sender{sender},
		Waiter: waiter, WakeHead: head,
		// One announcement round and cfg.Copies RELEASE copies (1
		// unless asked): loopback loses nothing, the peers send once,
		// and each is one burst per run (at most 150,000 and 50,000
		// datagrams a copy, 50,000 unicast subscribers), never a
		// sustained flood.
		Lead: cfg.Lead * 8 / 10, Rounds: 1, Repeat: cfg.Copies, OnRelease: func(r edge.Report) {
			select {
			case e.reports <- r:
			default:
			}
		},
	})
	if err != nil {
		e.close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- e.edge.Run(ctx) }()
	return e, nil
}

// edgeWaiter is the release thread as `embargo edge -rt-priority p` runs
// it: its last second before the instant, the wait and the first copy's
// send at SCHED_FIFO p (0: normal priority).
func edgeWaiter(p int) (ptp.Waiter, time.Duration) {
	if p != 0 {
		return ptp.Precise{Priority: p}, time.Second
	}
	return ptp.Precise{}, edge.DefaultWakeHead
}

func (e *edgeSender) spec() subscriberSpec { return e.s }

func (e *edgeSender) ready(ctx context.Context) error {
	if e.web != nil {
		return browsersConnected(ctx, e.web, e.cfg.Subscribers)
	}
	if e.server == nil {
		return nil // group members are ready once they have joined
	}
	return subscribed(ctx, []*unicast.Server{e.server}, e.cfg.Subscribers)
}

func (e *edgeSender) release(ctx context.Context, releaseAt int64) (sent, error) {
	b, err := e.org.Resource(e.s.Stream, 0, origin.Instants{ReleaseAt: releaseAt, PresentAt: releaseAt}, e.cfg.Resource)
	if err != nil {
		return sent{}, err
	}
	if err := e.edge.Add(b); err != nil {
		return sent{}, fmt.Errorf("bench: edge refused the release: %w", err)
	}
	select {
	case r := <-e.reports:
		st := e.edge.Stats()
		n := st.ShardsSent + st.ReleaseCopies
		if e.server != nil {
			n = e.server.Stats().Sent
		}
		if e.web != nil {
			n = e.web.Stats().Sent
		}
		return sent{Lateness: r.Lateness, FanOut: r.FanOut, Datagrams: n}, nil
	case err := <-e.done:
		e.done <- err // for close
		return sent{}, fmt.Errorf("bench: edge stopped before the release: %w", err)
	case <-ctx.Done():
		return sent{}, ctx.Err()
	}
}

func (e *edgeSender) close() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	for _, c := range e.closers {
		c()
	}
}

// natsSender is an embedded nats-server and one publishing connection.
type natsSender struct {
	cfg *ReleaseConfig
	s   subscriberSpec
	srv *server.Server
	nc  *nats.Conn
}

func openNATSSender(cfg *ReleaseConfig, spec subscriberSpec) (*natsSender, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, MaxConn: cfg.Subscribers + 16})
	if err != nil {
		return nil, fmt.Errorf("bench: nats-server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("bench: nats-server not ready in 10s")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("bench: nats publisher: %w", err)
	}
	spec.Addr = srv.ClientURL()
	return &natsSender{cfg: cfg, s: spec, srv: srv, nc: nc}, nil
}

func (n *natsSender) spec() subscriberSpec { return n.s }

// ready has nothing to wait for: each subscriber process flushes its
// subscriptions (a PING/PONG after the SUBs) before it says it is ready.
func (n *natsSender) ready(context.Context) error { return nil }

func (n *natsSender) release(ctx context.Context, releaseAt int64) (sent, error) {
	var fanOut time.Duration
	var failed error
	late, err := peerWaiter(n.cfg).WaitUntilThen(ctx, n.cfg.Clock, releaseAt, func(time.Duration) {
		t0 := time.Now()
		if err := n.nc.Publish(natsSubject, n.s.Resource); err != nil {
			failed = fmt.Errorf("bench: nats publish: %w", err)
		} else if err := n.nc.Flush(); err != nil {
			failed = fmt.Errorf("bench: nats flush: %w", err)
		}
		fanOut = time.Since(t0)
	})
	if err != nil {
		return sent{}, err
	}
	return sent{Lateness: late, FanOut: fanOut}, failed
}

// peerWaiter is the wait a peer's sender does before it sends, on the
// thread that sends: at normal priority, or at the edge's with
// PeersRealtime.
func peerWaiter(cfg *ReleaseConfig) ptp.Precise {
	if cfg.PeersRealtime {
		return ptp.Precise{Priority: cfg.priority()}
	}
	return ptp.Precise{}
}

func (n *natsSender) close() {
	n.nc.Close()
	n.srv.Shutdown()
}

// wsSender is a plain WebSocket server that writes the resource to each
// connection in turn: what a web team would write first.
type wsSender struct {
	cfg  *ReleaseConfig
	s    subscriberSpec
	want int
	srv  *http.Server

	mu    sync.Mutex
	conns []*websocket.Conn
	all   chan struct{} // closed once want connections are held
}

func openWebSocketSender(cfg *ReleaseConfig, spec subscriberSpec) (*wsSender, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &wsSender{cfg: cfg, want: cfg.Subscribers, all: make(chan struct{})}
	w.srv = &http.Server{Handler: http.HandlerFunc(w.serve), ReadHeaderTimeout: 10 * time.Second}
	go w.srv.Serve(ln)
	spec.Addr = "ws://" + ln.Addr().String() + "/"
	w.s = spec
	return w, nil
}

func (w *wsSender) serve(rw http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(rw, r, nil)
	if err != nil {
		return
	}
	ctx := c.CloseRead(context.Background()) // answers pings and closes
	w.mu.Lock()
	w.conns = append(w.conns, c)
	if len(w.conns) == w.want {
		close(w.all)
	}
	w.mu.Unlock()
	<-ctx.Done()
}

func (w *wsSender) spec() subscriberSpec { return w.s }

// ready waits for the server to hold every connection its subscribers
// have opened (a handler registers one just after the handshake).
func (w *wsSender) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	select {
	case <-w.all:
		return nil
	case <-ctx.Done():
		w.mu.Lock()
		defer w.mu.Unlock()
		return fmt.Errorf("bench: the websocket server holds %d of %d connections", len(w.conns), w.want)
	}
}

func (w *wsSender) release(ctx context.Context, releaseAt int64) (sent, error) {
	w.mu.Lock()
	conns := w.conns
	w.mu.Unlock()
	var fanOut time.Duration
	var failed error
	late, err := peerWaiter(w.cfg).WaitUntilThen(ctx, w.cfg.Clock, releaseAt, func(time.Duration) {
		t0 := time.Now()
		for _, c := range conns {
			if err := c.Write(ctx, websocket.MessageBinary, w.s.Resource); err != nil && failed == nil {
				failed = fmt.Errorf("bench: websocket write: %w", err)
			}
		}
		fanOut = time.Since(t0)
	})
	if err != nil {
		return sent{}, err
	}
	return sent{Lateness: late, FanOut: fanOut}, failed
}

func (w *wsSender) close() {
	w.mu.Lock()
	for _, c := range w.conns {
		c.CloseNow()
	}
	w.mu.Unlock()
	w.srv.Close()
}
