package subscriber

import (
	"cmp"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var (
	// ErrConfig is wrapped by the reasons a Config is refused.
	ErrConfig = errors.New("subscriber: invalid config")
	// ErrNotSupported is wrapped when the transport lacks what was asked
	// of it (a socket to attach a filter to).
	ErrNotSupported = errors.New("subscriber: not supported")
)

// Defaults for Config.
const (
	DefaultRetry    = 200 * time.Millisecond
	DefaultMaxRetry = 5 * time.Second
	// DefaultHandshakeTimeout is how long a handshake may go unanswered
	// before it starts over with a fresh nonce and key share.
	DefaultHandshakeTimeout = 30 * time.Second
)

// MaxRetryAfter caps an edge's retry-after advice: a REFUSED can delay
// this client's next attempt at that edge by no more (PROTOCOL.md §4.5).
const MaxRetryAfter = 30 * time.Second

// minResponseGap is the least time between two RESPONSEs: a CHALLENGE is
// unauthenticated, so a flood of them must not make the client flood its
// edge.
const minResponseGap = 100 * time.Millisecond

// Config configures a Client. Edge and Streams are required.
type Config struct {
	Edge    netip.AddrPort
	Streams []uint32
	// CatchUp is how many released periods per stream to ask for on each
	// subscription (0 … wire.MaxCatchUp).
	CatchUp int
	// Retry is the first wait before a handshake message is repeated; it
	// doubles up to MaxRetry, each wait drawn at random from its upper
	// half so that receivers an edge refused together do not return
	// together.
	Retry, MaxRetry time.Duration
	// HandshakeTimeout is how long a handshake may go unanswered before
	// it starts over (default DefaultHandshakeTimeout); a subscription
	// starts over after the expiry the edge advertised.
	HandshakeTimeout time.Duration
	// Token, when set, returns the subscription token to present in each
	// SUBSCRIBE (PROTOCOL.md §4.10), or nil for none.
	Token func() []byte
	// Local, if valid, is the address Dial binds the client's socket to
	// (a device with several; or many clients on one host, which would
	// otherwise share one address's ephemeral ports, some 28,000).
	Local  netip.Addr
	Logger *slog.Logger
}

// Conn is a Client's transport: a datagram socket connected to its edge.
// The Client reads it from the receiver's goroutine and writes it from its
// own.
type Conn interface {
	// ReadBatch returns datagrams from the edge (datagram.Source). After
	// Close it returns an error wrapping net.ErrClosed. An error wrapping
	// syscall.ECONNREFUSED reports an ICMP port-unreachable for an earlier
	// Write (the edge is down); the Client counts it and reads on.
	datagram.Source
	// Write sends one datagram to the edge. A datagram may be lost.
	Write(b []byte) (int, error)
}

// Client is a receiver's session with one edge. It is a datagram.Source:
// ReadBatch returns the edge's ANNOUNCE and RELEASE datagrams and handles
// the session messages itself. It subscribes, sends authenticated
// keepalives, answers the edge's path challenges, and starts over when the
// edge refuses the session (a restart) or falls silent — in any phase —
// for the session's expiry or the handshake timeout.
//
// It believes only what answers its own outstanding request: a COOKIE or
// SUBSCRIBED echoing its nonce, a REFUSED echoing its nonce or its last
// keepalive's MAC, a keepalive echo under the session key. Anything else
// is counted (Stats.Ignored) and changes nothing. A device runs one Client
// per edge, so while one backs off the others keep delivering.
type Client struct {
	cfg  Config
	log  *slog.Logger
	conn Conn
	kick chan struct{}
	done chan struct{}

	mu    sync.Mutex
	st    clientState
	stats Stats
}

type clientState struct {
	phase     phase
	nonce     [wire.NonceLen]byte
	share     *ecdh.PrivateKey // this handshake's key share
	cookie    [wire.CookieLen]byte
	session   [wire.SessionIDLen]byte
	key       [wire.SessionKeyLen]byte
	keepalive time.Duration
	expiry    time.Duration
	heard     time.Time // last authentic answer from the edge
	next      time.Time // when to send the next handshake or keepalive
	backoff   time.Duration
	seq       uint32
	tags      [2][wire.NonceLen]byte // MACs (first 8 bytes) of the last two keepalives or responses
	challenge *[wire.CookieLen]byte  // a CHALLENGE's cookie to answer
	responded time.Time
	refusals  int // REFUSEDs since the last subscription
}

type phase uint8

const (
	phaseHello phase = iota
	phaseSubscribe
	phaseSubscribed
)

// Stats counts a client's session events.
type Stats struct {
	Subscriptions uint64 // SUBSCRIBED received
	Restarts      uint64 // sessions started over (refused or silent edge)
	Refused       uint64
	Data          uint64 // ANNOUNCE and RELEASE datagrams passed on
	Unreachable   uint64 // ICMP port-unreachable reports: the edge was down
	// Ignored counts session messages that answered no request of this
	// client's or failed the session key: spoofed, stale or corrupt.
	Ignored uint64
	// Challenges counts the edge's path challenges answered (the client's
	// address changed, as after a NAT rebinding).
	Challenges uint64
}

// Dial opens a UDP socket to cfg.Edge and starts the session over it in
// the background.
func Dial(cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var local *net.UDPAddr
	if cfg.Local.IsValid() {
		local = net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Local, 0))
	}
	conn, err := net.DialUDP("udp", local, net.UDPAddrFromAddrPort(cfg.Edge))
	if err != nil {
		return nil, fmt.Errorf("subscriber: dial %v: %w", cfg.Edge, err)
	}
	r, err := udp.NewReader(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return New(cfg, socketConn{r, conn})
}

// New starts the session with cfg.Edge over conn in the background
// (Dial opens a UDP socket for it; a test passes an in-memory Conn). The
// Client owns conn and closes it.
func New(cfg Config, conn Conn) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.Retry = cmp.Or(cfg.Retry, DefaultRetry)
	cfg.MaxRetry = cmp.Or(cfg.MaxRetry, DefaultMaxRetry)
	cfg.HandshakeTimeout = cmp.Or(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: log.With("edge", cfg.Edge), conn: conn, kick: make(chan struct{}, 1), done: make(chan struct{})}
	c.restart(time.Now(), false)
	go c.maintain()
	return c, nil
}

func (cfg *Config) check() error {
	if !cfg.Edge.IsValid() || len(cfg.Streams) == 0 || len(cfg.Streams) > wire.MaxStreams || cfg.CatchUp < 0 || cfg.CatchUp > wire.MaxCatchUp {
		return fmt.Errorf("%w: client for %v with %d streams, catch-up %d", ErrConfig, cfg.Edge, len(cfg.Streams), cfg.CatchUp)
	}
	return nil
}

// socketConn is a Client's UDP socket: the batch reader and the connected
// socket it reads.
type socketConn struct {
	*udp.Reader
	c *net.UDPConn
}

func (s socketConn) Write(b []byte) (int, error) { return s.c.Write(b) }

// maintain sends handshakes, keepalives and challenge responses when due,
// and starts over when the edge has been silent for the session's expiry
// (or, handshaking, the handshake timeout).
func (c *Client) maintain() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
		case <-t.C:
		}
		now := time.Now()
		c.mu.Lock()
		limit := c.limit()
		if now.Sub(c.st.heard) > limit {
			c.log.Warn("subscriber: edge silent, starting over", "silent", now.Sub(c.st.heard))
			c.restart(now, true)
		}
		msgs := make([][]byte, 0, 2)
		if m := c.respond(now); m != nil {
			msgs = append(msgs, m)
		}
		if !now.Before(c.st.next) {
			if m := c.due(now); m != nil {
				msgs = append(msgs, m)
			}
		}
		// Wake for the next message, a response held back by its gap, or
		// the watchdog, whichever is first.
		wake := c.st.next
		if limit = c.limit(); c.st.heard.Add(limit).Before(wake) {
			wake = c.st.heard.Add(limit)
		}
		if r := c.st.responded.Add(minResponseGap); c.st.challenge != nil && r.Before(wake) {
			wake = r
		}
		wait := max(wake.Sub(now), time.Millisecond)
		c.mu.Unlock()
		for _, m := range msgs {
			if _, err := c.conn.Write(m); err != nil {
				c.log.Debug("subscriber: send", "err", err)
			}
		}
		t.Reset(wait)
	}
}

// due builds the message the current phase sends now and schedules the
// next. c.mu is held.
func (c *Client) due(now time.Time) []byte {
	st := &c.st
	var m interface{ Encode([]byte) (int, error) }
	switch st.phase {
	case phaseHello:
		m = &wire.Hello{Nonce: st.nonce, PadLen: wire.HelloMinLen - wire.HeaderLen - wire.NonceLen}
	case phaseSubscribe:
		sub := &wire.Subscribe{Nonce: st.nonce, Cookie: st.cookie, CatchUp: uint8(c.cfg.CatchUp),
			KeyShare: [wire.KeyShareLen]byte(st.share.PublicKey().Bytes()), Streams: slices.Clone(c.cfg.Streams)}
		if c.cfg.Token != nil {
			sub.Token = c.cfg.Token()
		}
		m = sub
	case phaseSubscribed:
		st.seq++
		st.next = now.Add(st.keepalive)
		m = &wire.Keepalive{SessionID: st.session, Seq: st.seq}
	}
	if st.phase != phaseSubscribed {
		st.next = now.Add(jitter(st.backoff))
		st.backoff = min(2*st.backoff, c.cfg.MaxRetry)
	}
	b := make([]byte, wire.MaxDatagram)
	n, err := m.Encode(b)
	if err != nil {
		return nil
	}
	if st.phase == phaseSubscribed {
		seal.SignSession(&st.key, b[:n])
		st.tags[0], st.tags[1] = [wire.NonceLen]byte(b[n-wire.MACLen:]), st.tags[0]
	}
	return b[:n]
}

// limit is how long the edge may be silent in the current phase. c.mu is
// held.
func (c *Client) limit() time.Duration {
	if c.st.phase == phaseSubscribed {
		return c.st.expiry
	}
	return c.cfg.HandshakeTimeout
}

// jitter returns a wait drawn at random from d's upper half.
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(mrand.Int64N(int64(d/2)+1))
}

// respond builds the RESPONSE to a pending CHALLENGE, at most one per
// minResponseGap. c.mu is held.
func (c *Client) respond(now time.Time) []byte {
	st := &c.st
	if st.challenge == nil || st.phase != phaseSubscribed || now.Sub(st.responded) < minResponseGap {
		return nil
	}
	st.seq++
	b := make([]byte, wire.ResponseLen)
	if _, err := (&wire.Response{SessionID: st.session, Seq: st.seq, Cookie: *st.challenge}).Encode(b); err != nil {
		return nil
	}
	seal.SignSession(&st.key, b)
	st.tags[0], st.tags[1] = [wire.NonceLen]byte(b[wire.ResponseLen-wire.MACLen:]), st.tags[0]
	st.challenge, st.responded = nil, now
	c.stats.Challenges++
	return b
}

// restart begins a new handshake. c.mu is held.
func (c *Client) restart(now time.Time, count bool) {
	if count {
		c.stats.Restarts++
	}
	c.st = clientState{phase: phaseHello, heard: now, next: now, backoff: c.cfg.Retry}
	// A nonce of zero is never accepted in an answer, so never sent.
	for c.st.nonce == ([wire.NonceLen]byte{}) {
		rand.Read(c.st.nonce[:])
	}
	share, err := seal.NewKeyShare(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("subscriber: X25519 key from crypto/rand: %v", err)) // crypto/rand does not fail
	}
	c.st.share = share
}

func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// ReadBatch returns the edge's ANNOUNCE and RELEASE datagrams, handling
// session messages in between.
func (c *Client) ReadBatch(ms []datagram.Message) (int, error) {
	for {
		n, err := c.conn.ReadBatch(ms)
		if errors.Is(err, syscall.ECONNREFUSED) {
			// An ICMP port-unreachable for an earlier send: the edge is
			// down or restarting. The handshake retries on its own.
			c.mu.Lock()
			c.stats.Unreachable++
			c.mu.Unlock()
			continue
		}
		if err != nil {
			return 0, err
		}
		kept := datagram.Keep(ms, n, func(m *datagram.Message) bool { return !c.session(m.Buf[:m.N]) })
		// Data is no sign of life: anyone can send it from the edge's
		// address. Only authentic session answers are (c.session).
		c.mu.Lock()
		c.stats.Data += uint64(kept)
		c.mu.Unlock()
		if kept > 0 {
			return kept, nil
		}
	}
}

// session handles d if it is a session message and reports whether it
// was. Data datagrams pass without taking the lock.
func (c *Client) session(d []byte) bool {
	h, err := wire.Peek(d)
	if err != nil {
		return false // the receiver counts it
	}
	switch h.Type {
	case wire.TypeAnnounce, wire.TypeRelease:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.answer(h.Type, d, time.Now()) {
		c.stats.Ignored++
	}
	return true
}

// answer handles session message d of type t if it answers this client's
// outstanding request, and reports whether it did. c.mu is held.
func (c *Client) answer(t wire.Type, d []byte, now time.Time) bool {
	st := &c.st
	switch t {
	case wire.TypeCookie:
		var m wire.Cookie
		if m.Decode(d) != nil || st.phase != phaseHello || m.Nonce != st.nonce {
			return false
		}
		st.cookie, st.phase, st.next, st.backoff, st.heard = m.Cookie, phaseSubscribe, now, c.cfg.Retry, now
		c.wake()
	case wire.TypeSubscribed:
		var m wire.Subscribed
		if m.Decode(d) != nil || st.phase != phaseSubscribe || m.Nonce != st.nonce {
			return false
		}
		mask, err := seal.SessionKeyMask(st.share, &m.KeyShare, &st.nonce)
		if err != nil {
			return false
		}
		st.phase, st.session, st.key, st.heard, st.refusals = phaseSubscribed, m.SessionID, seal.XorKey(&m.SealedKey, &mask), now, 0
		st.keepalive = time.Duration(m.KeepaliveMs) * time.Millisecond
		st.expiry = time.Duration(m.ExpiryMs) * time.Millisecond
		st.next = now.Add(st.keepalive)
		c.stats.Subscriptions++
		c.log.Info("subscriber: subscribed", "streams", m.Streams, "keepalive", st.keepalive)
	case wire.TypeRefused:
		var m wire.Refused
		if m.Decode(d) != nil || !c.outstanding(m.Nonce) {
			return false
		}
		c.stats.Refused++
		c.log.Info("subscriber: refused", "reason", m.Reason)
		refusals := st.refusals + 1
		c.restart(now, true)
		c.st.refusals = refusals
		// A stale cookie or a forgotten session is fixed by starting over
		// at once, the first time; anything else, or a refusal again,
		// waits a back-off that grows with each refusal in a row.
		var wait time.Duration
		if refusals > 1 || (m.Reason != wire.ReasonBadCookie && m.Reason != wire.ReasonUnknownSession) {
			wait = jitter(min(c.cfg.Retry<<min(refusals-1, 16), c.cfg.MaxRetry))
		}
		if m.RetryAfterMs > 0 {
			wait = max(wait, min(time.Duration(m.RetryAfterMs)*time.Millisecond, MaxRetryAfter))
		}
		c.st.next = now.Add(wait)
		c.wake()
	case wire.TypeKeepalive:
		var m wire.Keepalive
		if m.Decode(d) != nil || !m.Echo || st.phase != phaseSubscribed || m.SessionID != st.session ||
			m.Seq > st.seq || m.Seq+2 < st.seq || !seal.VerifySession(&st.key, d) {
			return false
		}
		st.heard = now
	case wire.TypeChallenge:
		var m wire.Challenge
		if m.Decode(d) != nil || st.phase != phaseSubscribed || m.SessionID != st.session {
			return false
		}
		st.challenge = &m.Cookie
		c.wake()
	default:
		return false
	}
	return true
}

// outstanding reports whether a REFUSED echoing nonce answers this
// client's request: its handshake's nonce, or the MAC of one of its last
// two keepalives. Zero never does.
func (c *Client) outstanding(nonce [wire.NonceLen]byte) bool {
	st := &c.st
	switch {
	case nonce == [wire.NonceLen]byte{}:
		return false
	case st.phase == phaseSubscribed:
		return nonce == st.tags[0] || nonce == st.tags[1]
	default:
		return nonce == st.nonce
	}
}

// SyscallConn gives access to the socket, to attach a filter to it; a
// transport without one returns an error wrapping ErrNotSupported.
func (c *Client) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("subscriber: client transport has no socket: %w", ErrNotSupported)
}

// Subscribed reports whether the client holds a live session.
func (c *Client) Subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.phase == phaseSubscribed
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Close sends a LEAVE if subscribed, stops the session and closes the
// socket; a blocked ReadBatch returns.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.st.phase == phaseSubscribed {
		var b [wire.LeaveLen]byte
		c.st.seq++
		if n, err := (&wire.Leave{SessionID: c.st.session, Seq: c.st.seq}).Encode(b[:]); err == nil {
			seal.SignSession(&c.st.key, b[:n])
			c.conn.Write(b[:n])
		}
	}
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.mu.Unlock()
	return c.conn.Close()
}
