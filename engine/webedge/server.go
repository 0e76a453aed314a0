package webedge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// ErrConfig is wrapped by the reasons New refuses a configuration.
var ErrConfig = errors.New("webedge: invalid config")

// Defaults for Config.
const (
	// DefaultQueue holds a period's ANNOUNCE rounds and RELEASE copies
	// (about 31 messages at the edge's defaults) several times over.
	DefaultQueue    = 256
	DefaultMaxConns = 10000
	// DefaultMaxPerAddress is higher than unicast's: a carrier's NAT,
	// a venue's Wi-Fi or a privacy relay puts many browsers behind one
	// address, and one host still takes at most a tenth of the default
	// MaxConns.
	DefaultMaxPerAddress = 1024
	// DefaultMaxPerViewer leaves a viewer's devices, each on one session
	// to the edge, and their reconnections room.
	DefaultMaxPerViewer = 8
	// DefaultRetryAbove lets 10,000 browsers join within 10 s without a
	// Retry; a flood beyond it costs a stateless Retry a packet.
	DefaultRetryAbove = 1000
	DefaultCatchUp    = 2
	DefaultWriteWait  = 5 * time.Second
	// readLimit is the largest message a browser may send: it has nothing
	// to say, so anything it sends is bad input.
	readLimit = 128
)

// Config configures a Server. Streams and Clock are required.
type Config struct {
	// Streams are the streams whose history a new connection is sent.
	Streams []uint32
	// Clock is the edge's: catch-up never sends a RELEASE before the
	// clock's earliest time has passed its releaseAt.
	Clock ptp.Clock
	// Queue is how many messages may wait for one browser (DefaultQueue);
	// a browser that falls further behind is closed.
	Queue int
	// MaxConns bounds the connections held at once (DefaultMaxConns);
	// more are refused with 503.
	MaxConns int
	// MaxPerAddress bounds the sessions from one IP address, and
	// MaxPerPrefix those from one IPv6 prefix of PrefixBits
	// (DefaultMaxPerAddress, unicast.DefaultPrefixBits); more are
	// refused with 429. One host cannot take the edge's MaxConns from
	// everyone else. Behind a proxy every browser has the proxy's
	// address: raise them to MaxConns.
	MaxPerAddress, MaxPerPrefix, PrefixBits int
	// MaxPerViewer bounds, where Tokens are required, the sessions whose
	// tokens name one viewer (DefaultMaxPerViewer): a token copied from
	// a page opens no more; more are refused with 429.
	MaxPerViewer int
	// RetryAbove is how many WebTransport handshakes a second from
	// addresses not yet proven the edge takes before it asks each further
	// one to prove its address first (a QUIC Retry; DefaultRetryAbove;
	// negative: always).
	RetryAbove int
	// CatchUp is how many released periods of each stream a new
	// connection is sent first (DefaultCatchUp; at most wire.MaxCatchUp).
	CatchUp int
	// WriteWait bounds one message's write (DefaultWriteWait).
	WriteWait time.Duration
	// OriginPatterns are the page origins other than the endpoint's own
	// host allowed to connect (websocket.AcceptOptions.OriginPatterns).
	OriginPatterns []string
	// Tokens, when set, admits only a request whose URL carries a
	// subscription token (PROTOCOL.md §4.10) signed by one of its keys,
	// in the query parameter TokenParam as the licence's
	// Embargo-Subscription-Token header gives it (standard base64): a
	// page cannot set headers on a WebSocket or WebTransport request.
	Tokens *seal.KeyRing
	// TokenMaxLife bounds how long a token may still be valid
	// (unicast.DefaultTokenMaxLife, as for unicast subscribers).
	TokenMaxLife time.Duration
	// Admit, when set, decides further whether a request may open a
	// session (after Tokens); it sees the request (query, headers,
	// cookies) before the upgrade, and its error is answered as 403.
	Admit  func(*http.Request) error
	Logger *slog.Logger
}

// TokenParam is the URL query parameter holding a browser's
// subscription token.
const TokenParam = "token"

// Stats are a server's counters.
type Stats struct {
	// Conns is how many browsers are connected now; Accepted and Refused
	// count sessions opened and requests turned away (not admitted, over
	// MaxConns, or a failed upgrade).
	Conns             int
	Accepted, Refused uint64
	// RefusedAddress counts the refused requests (among Refused) from an
	// IP address or IPv6 prefix at its MaxPerAddress or MaxPerPrefix.
	RefusedAddress uint64
	// RefusedViewer counts the refused requests (among Refused) whose
	// token's viewer held its most sessions (Config.MaxPerViewer).
	RefusedViewer uint64
	// RefusedConnections counts the TCP connections closed as accepted
	// because their address or prefix held its most (Listener), and
	// Connections is how many the Listener holds now.
	RefusedConnections uint64
	Connections        int
	// Retries counts the Initial packets answered with a QUIC Retry
	// (Config.RetryAbove), and RefusedInitials those whose connection was
	// refused before its handshake (the edge full, or its address or
	// prefix at its limit). A browser's first flight may be two Initial
	// packets. Handshakes counts the connections let on to their TLS
	// handshake.
	Retries, RefusedInitials, Handshakes uint64
	// BadToken counts the refused requests (among Refused) whose
	// subscription token was missing, malformed, expired or not signed
	// by a trusted key, with Tokens set.
	BadToken       uint64
	Sent, CatchUp  uint64 // messages written to browsers, and those that were catch-up
	Slow, BadInput uint64 // connections closed for a full queue or a stalled write, and for sending what no page sends
	WriteErrors    uint64 // writes that failed otherwise (the browser went away)
	Dropped        uint64 // messages not queued because their connection was full
	TimeEchoes     uint64 // time requests answered (PROTOCOL.md §4.8)
	// TimeUnanswered counts well-formed time requests within budget left
	// unanswered because the edge's clock could not be read; the page
	// asks again, and the session stays open.
	TimeUnanswered uint64
	// CopiesSkipped counts the edge's further copies of a live RELEASE
	// not sent to a browser that was already sent it (Send).
	CopiesSkipped uint64
	// AnnounceRepeats counts ANNOUNCE datagrams of the carousel's later
	// rounds not sent to a browser that was already sent them.
	AnnounceRepeats uint64
}

// Server is the browser endpoint and an edge.Sender. Serve it with
// Handler (WebSocket) and ServeWebTransport; Send is safe for concurrent
// use and never blocks on a browser.
type Server struct {
	cfg     Config
	log     *slog.Logger
	history atomic.Pointer[edge.History]

	mu    sync.RWMutex
	conns map[*conn]struct{}
	// sessions, tcp and quic count the sessions held, the WebSocket
	// endpoint's TCP connections (Listener) and the WebTransport
	// endpoint's QUIC connections, by IP address and by IPv6 prefix
	// (Config.MaxPerAddress, MaxPerPrefix).
	sessions, tcp, quic siteCounts
	tcpOpen             int             // the Listener's connections
	crowdedLog          bounded         // noteRefused
	viewers             map[[8]byte]int // sessions by their tokens' viewer

	accepted, refused, refusedAddr, refusedViewer, refusedConns, retries, refusedInitials, handshakes, badToken, sent, catchUp, slow, bad, writeErrs, dropped, echoes, unanswered, copiesSkipped, announceRepeats atomic.Uint64
	seed                                                                                                                                                                                                          maphash.Seed // announceKeys
}

// conn is one browser: its queues, each drained by its own goroutine.
type conn struct {
	t      transport
	client client // who it is for, counted against the limits
	// queue is every datagram in order (WebSocket), or all but the live
	// RELEASEs' first copies (WebTransport's session stream, which
	// carries their second copies).
	queue chan []byte
	// releases are WebTransport's live RELEASEs' first copies, sent as
	// datagrams by their own goroutine so that none waits behind a
	// stream write; nil for WebSocket.
	releases chan []byte
	// sent are the live RELEASEs already queued (Send), next the slot
	// the next one takes.
	relMu sync.Mutex
	sent  [sentReleases]sentRelease
	next  int
	// announced are the ANNOUNCE datagrams queued to the session, until
	// their period's RELEASE (unannounced): the carousel's further rounds
	// repeat them for UDP's losses, which a session does not have.
	annMu     sync.Mutex
	announced map[releaseKey][]uint64 // hashes of the datagrams (announceKeys)
	closed    sync.Once
	done      chan struct{}
	// stop aborts a write in progress when the connection is closed.
	stop context.CancelFunc
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case len(cfg.Streams) == 0:
		return nil, fmt.Errorf("%w: no streams", ErrConfig)
	case cfg.Clock == nil:
		return nil, fmt.Errorf("%w: no clock", ErrConfig)
	case cfg.PrefixBits < 0 || cfg.PrefixBits > 128:
		return nil, fmt.Errorf("%w: IPv6 prefix of %d bits, want 1 to 128", ErrConfig, cfg.PrefixBits)
	case cfg.CatchUp > wire.MaxCatchUp:
		return nil, fmt.Errorf("%w: catch-up of %d periods, at most %d", ErrConfig, cfg.CatchUp, wire.MaxCatchUp)
	}
	cfg.Queue = cmp.Or(max(cfg.Queue, 0), DefaultQueue)
	cfg.MaxConns = cmp.Or(max(cfg.MaxConns, 0), DefaultMaxConns)
	cfg.MaxPerAddress = cmp.Or(max(cfg.MaxPerAddress, 0), DefaultMaxPerAddress)
	cfg.MaxPerPrefix = cmp.Or(max(cfg.MaxPerPrefix, 0), DefaultMaxPerAddress)
	cfg.PrefixBits = cmp.Or(cfg.PrefixBits, unicast.DefaultPrefixBits)
	cfg.RetryAbove = cmp.Or(cfg.RetryAbove, DefaultRetryAbove)
	cfg.MaxPerViewer = cmp.Or(max(cfg.MaxPerViewer, 0), DefaultMaxPerViewer)
	cfg.CatchUp = cmp.Or(cfg.CatchUp, DefaultCatchUp)
	cfg.WriteWait = cmp.Or(cfg.WriteWait, DefaultWriteWait)
	cfg.TokenMaxLife = cmp.Or(cfg.TokenMaxLife, unicast.DefaultTokenMaxLife)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, conns: make(map[*conn]struct{}), seed: maphash.MakeSeed(),
		sessions: newSiteCounts(), tcp: newSiteCounts(), quic: newSiteCounts(), viewers: make(map[[8]byte]int)}, nil
}

// SetHistory sets where catch-up comes from (edge.CatchUpSender).
func (s *Server) SetHistory(h edge.History) { s.history.Store(&h) }

// Send queues each datagram for every connected browser and returns
// len(dgs): a browser that cannot take them is closed, not waited for.
// The datagrams are copied once (the edge re-stamps its RELEASE buffers
// between copies) and the copies shared by every queue; the queues are
// filled by one goroutine per core.
//
// A browser's session is reliable, so the edge's copies of a live
// RELEASE, made for UDP's losses, are not all sent: over WebSocket the
// first copy goes as a message; over WebTransport the first as a
// datagram, at once, and the second (Spacing later) as a frame on the
// session's stream, which QUIC delivers even if the datagram is lost.
// The rest are counted (Stats.CopiesSkipped), not sent: at 10,000
// sessions each copy is 10,000 more packets.
func (s *Server) Send(typ wire.Type, dgs [][]byte) (int, error) {
	msgs := make([][]byte, len(dgs))
	var keys []releaseKey
	if typ == wire.TypeRelease {
		keys = make([]releaseKey, len(dgs))
	}
	for i, d := range dgs {
		msgs[i] = slices.Clone(d)
		if keys != nil {
			if h, err := wire.Peek(d); err == nil {
				keys[i] = releaseKey{stream: h.Stream, period: h.Period}
			}
		}
	}
	var shards []announceKey
	if typ == wire.TypeAnnounce {
		shards = s.announceKeys(msgs)
	}
	limit := maxAnnounced * len(s.cfg.Streams)
	s.mu.RLock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	parts := min(runtime.GOMAXPROCS(0), len(conns)/fanOutPart+1)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() {
			first := make([][]byte, 0, len(msgs))
			second := make([][]byte, 0, len(msgs))
			skipped, repeats := 0, 0 // counted once, not per browser on a shared counter
			defer func() { s.copiesSkipped.Add(uint64(skipped)); s.announceRepeats.Add(uint64(repeats)) }()
			for _, c := range conns[p*len(conns)/parts : (p+1)*len(conns)/parts] {
				if shards != nil {
					first = c.unannounced(msgs, shards, first[:0], limit)
					repeats += len(msgs) - len(first)
					s.enqueue(c, c.queue, first)
					continue
				}
				if keys == nil {
					s.enqueue(c, c.queue, msgs)
					continue
				}
				first, second = c.copies(msgs, keys, first[:0], second[:0])
				datagrams := c.releases != nil
				if !datagrams {
					second = second[:0] // WebSocket: the first copy is enough
				}
				skipped += len(msgs) - len(first) - len(second)
				switch {
				case len(first) > 0 && datagrams:
					if !s.enqueue(c, c.releases, first) {
						continue
					}
				case len(first) > 0:
					s.enqueue(c, c.queue, first)
				}
				if len(second) > 0 {
					s.enqueue(c, c.queue, second)
				}
			}
		})
	}
	wg.Wait()
	return len(dgs), nil
}

// fanOutPart is the fewest browsers worth another goroutine in Send.
const fanOutPart = 256

// enqueue queues msgs on q, one of c's queues, or closes c when it is
// full.
func (s *Server) enqueue(c *conn, q chan []byte, msgs [][]byte) bool {
	for i, m := range msgs {
		select {
		case q <- m:
		default:
			s.dropped.Add(uint64(len(msgs) - i))
			s.slow.Add(1)
			s.close(c, websocket.StatusPolicyViolation, "too slow: queue full")
			return false
		}
	}
	return true
}

// Handler returns the WebSocket endpoint: any path on it opens a session.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	cl, ok := s.admit(w, r)
	if !ok {
		return
	}
	// A session outlives any request timeout of the http.Server, whose
	// deadlines would otherwise stay on the hijacked connection.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		s.refused.Add(1)
		return
	}
	ws.SetReadLimit(readLimit)
	s.run(r.Context(), wsTransport{ws}, cl)
}

// run serves one browser's session until it ends: catch-up first, then
// every datagram sent.
func (s *Server) run(ctx context.Context, t transport, cl client) {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	c := &conn{t: t, client: cl, queue: make(chan []byte, s.cfg.Queue), done: make(chan struct{}), stop: stop}
	if t.datagrams() {
		c.releases = make(chan []byte, s.cfg.Queue)
	}
	s.mu.Lock()
	// Checked again: others may have been accepted meanwhile.
	why, ok := s.room(cl)
	if ok {
		s.conns[c] = struct{}{}
		s.site(cl, 1)
	}
	s.mu.Unlock()
	if !ok {
		t.end(websocket.StatusTryAgainLater, why)
		return
	}
	s.accepted.Add(1)
	s.sendCatchUp(c)
	go s.read(ctx, c)
	if c.releases != nil {
		go s.sendReleases(c)
	}
	s.write(wctx, c)
	s.remove(c)
}

// sendCatchUp queues what a browser joining now needs (edge.CatchUp).
// The connection is already registered, so a RELEASE sent meanwhile may
// come before its catch-up ANNOUNCE: the receiver keeps such a RELEASE
// until its body arrives.
func (s *Server) sendCatchUp(c *conn) {
	h := s.history.Load()
	if h == nil {
		return
	}
	now, err := s.cfg.Clock.Now()
	if err != nil {
		return
	}
	dgs := edge.CatchUp(*h, s.cfg.Streams, s.cfg.CatchUp, now.Earliest)
	// Its ANNOUNCEs are remembered as queued, and any a round queued
	// since the session was registered are not queued again; those of
	// the released periods it carries are forgotten at once (their
	// rounds are over).
	all := dgs
	dgs = c.unannounced(dgs, s.announceKeys(dgs), make([][]byte, 0, len(dgs)), maxAnnounced*len(s.cfg.Streams))
	for _, d := range all {
		if h, err := wire.Peek(d); err == nil && h.Type == wire.TypeRelease {
			c.released(releaseKey{stream: h.Stream, period: h.Period})
		}
	}
	if s.enqueue(c, c.queue, dgs) {
		s.catchUp.Add(uint64(len(dgs)))
	}
}

// read waits for the browser to close; anything it sends is bad input.
func (s *Server) read(ctx context.Context, c *conn) {
	// Time requests draw on a budget of maxTimeRequests, refilled by
	// one a second.
	budget, last := float64(maxTimeRequests), time.Now()
	for {
		m, err := c.t.read(ctx)
		if err == nil {
			var req wire.TimeRequest
			if req.Decode(m) == nil {
				received, ok := s.edgeTime()
				now := time.Now()
				budget, last = min(maxTimeRequests, budget+now.Sub(last).Seconds()), now
				if budget >= 1 {
					budget--
					if ok {
						s.echo(ctx, c, req, received)
					} else {
						// A clock the edge cannot read is the edge's
						// condition, not the browser's fault.
						s.unanswered.Add(1)
					}
					continue
				}
			}
			err = errBadInput
		}
		if errors.Is(err, errBadInput) {
			s.bad.Add(1)
			s.close(c, websocket.StatusPolicyViolation, "a browser sends only time requests, a few a second")
			return
		}
		s.close(c, websocket.StatusNormalClosure, "")
		return
	}
}

// maxTimeRequests is how many time requests a browser may send at once;
// then one a second. A page sends a few at start, then one every few
// seconds.
const maxTimeRequests = 8

// edgeTime is the edge clock's best estimate of now (TAI ns): the
// middle of its interval; not ok while the clock has no reading.
func (s *Server) edgeTime() (int64, bool) {
	now, err := s.cfg.Clock.Now()
	if err != nil {
		return 0, false
	}
	return now.Earliest + (now.Latest-now.Earliest)/2, true
}

// echo answers a time request received at received, stamping its send
// instant last.
func (s *Server) echo(ctx context.Context, c *conn, req wire.TimeRequest, received int64) {
	e := wire.TimeEcho{Origin: req.Origin, Received: received}
	e.Sent, _ = s.edgeTime()
	b := make([]byte, wire.TimeEchoLen)
	e.Encode(b)
	wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteWait)
	defer cancel()
	if c.t.reply(wctx, b) == nil {
		s.echoes.Add(1)
	}
}

// maxBatch bounds how many queued datagrams one write takes.
const maxBatch = 64

// write drains c's queue until c is closed, taking whatever is waiting
// in one write.
func (s *Server) write(ctx context.Context, c *conn) {
	batch := make([][]byte, 0, maxBatch)
	for {
		select {
		case <-c.done:
			return
		case m := <-c.queue:
			batch = append(batch[:0], m)
		more:
			for len(batch) < maxBatch {
				select {
				case m := <-c.queue:
					batch = append(batch, m)
				default:
					break more
				}
			}
			wctx, cancel := context.WithTimeout(ctx, s.cfg.WriteWait)
			err := c.t.write(wctx, batch)
			stalled := (wctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) && ctx.Err() == nil
			cancel()
			switch {
			case err == nil:
				s.sent.Add(uint64(len(batch)))
			case stalled:
				s.slow.Add(1)
				s.close(c, websocket.StatusPolicyViolation, "too slow: write stalled")
				return
			default:
				s.writeErrs.Add(1)
				s.close(c, websocket.StatusNormalClosure, "")
				return
			}
		}
	}
}

// sendReleases sends c's live RELEASEs as datagrams until c is closed.
// A datagram the connection refuses is counted as dropped, as UDP
// would lose it.
func (s *Server) sendReleases(c *conn) {
	for {
		select {
		case <-c.done:
			return
		case m := <-c.releases:
			if err := c.t.datagram(m); err != nil {
				s.dropped.Add(1)
			} else {
				s.sent.Add(1)
			}
		}
	}
}

// close ends c once; its writer and reader return.
func (s *Server) close(c *conn, code websocket.StatusCode, reason string) {
	c.closed.Do(func() {
		close(c.done)
		if code == websocket.StatusPolicyViolation {
			// A browser too slow or misbehaving gets no close handshake:
			// its connection goes now, with any write stuck on it.
			c.stop()
			c.t.abort(reason)
			return
		}
		// Close waits for the browser's answer; never in the fan-out.
		go c.t.end(code, reason)
	})
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.site(c.client, -1)
	s.mu.Unlock()
}

// CloseAll closes every connection, as an edge that stops does. It holds
// s.mu while it closes: a GoingAway close ends its connection on another
// goroutine, which may take s.mu (remove, a Listener's connection).
func (s *Server) CloseAll() {
	s.mu.RLock()
	for c := range s.conns {
		s.close(c, websocket.StatusGoingAway, "edge stopping")
	}
	s.mu.RUnlock()
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	n := len(s.conns)
	tcp := s.tcpOpen
	s.mu.RUnlock()
	return Stats{
		Conns: n, Accepted: s.accepted.Load(), Refused: s.refused.Load(), RefusedAddress: s.refusedAddr.Load(), RefusedViewer: s.refusedViewer.Load(), RefusedConnections: s.refusedConns.Load(), Connections: tcp, Retries: s.retries.Load(), RefusedInitials: s.refusedInitials.Load(), Handshakes: s.handshakes.Load(), BadToken: s.badToken.Load(),
		Sent: s.sent.Load(), CatchUp: s.catchUp.Load(),
		Slow: s.slow.Load(), BadInput: s.bad.Load(), WriteErrors: s.writeErrs.Load(),
		Dropped: s.dropped.Load(), TimeEchoes: s.echoes.Load(), TimeUnanswered: s.unanswered.Load(),
		CopiesSkipped: s.copiesSkipped.Load(), AnnounceRepeats: s.announceRepeats.Load(),
	}
}
