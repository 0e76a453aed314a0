package subscriber

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/udp"
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
)

// Config configures a Client. Edge and Streams are required.
type Config struct {
	Edge    netip.AddrPort
	Streams []uint32
	// CatchUp is how many released periods per stream to ask for on each
	// subscription (0 … wire.MaxCatchUp).
	CatchUp int
	// Retry is the first wait before a handshake message is repeated; it
	// doubles up to MaxRetry.
	Retry, MaxRetry time.Duration
	Logger          *slog.Logger
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
// the session messages itself. It subscribes, sends keepalives, and starts
// over when the edge refuses the session (a restart) or falls silent for
// the session's expiry.
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
	cookie    [wire.CookieLen]byte
	session   [wire.SessionIDLen]byte
	keepalive time.Duration
	expiry    time.Duration
	heard     time.Time // last datagram from the edge
	next      time.Time // when to send the next handshake or keepalive
	backoff   time.Duration
	seq       uint32
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
}

// Dial opens a UDP socket to cfg.Edge and starts the session over it in
// the background.
func Dial(cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(cfg.Edge))
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

// maintain sends handshakes and keepalives when due, and starts over when
// the edge has been silent for the session's expiry.
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
		if c.st.phase == phaseSubscribed && now.Sub(c.st.heard) > c.st.expiry {
			c.log.Warn("subscriber: edge silent, subscribing again", "silent", now.Sub(c.st.heard))
			c.restart(now, true)
		}
		var msg []byte
		if !now.Before(c.st.next) {
			msg = c.due(now)
		}
		wait := max(c.st.next.Sub(now), time.Millisecond)
		c.mu.Unlock()
		if msg != nil {
			if _, err := c.conn.Write(msg); err != nil {
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
		streams := append([]uint32(nil), c.cfg.Streams...)
		m = &wire.Subscribe{Nonce: st.nonce, Cookie: st.cookie, CatchUp: uint8(c.cfg.CatchUp), Streams: streams}
	case phaseSubscribed:
		st.seq++
		st.next = now.Add(st.keepalive)
		m = &wire.Keepalive{SessionID: st.session, Seq: st.seq}
	}
	if st.phase != phaseSubscribed {
		st.next = now.Add(st.backoff)
		st.backoff = min(2*st.backoff, c.cfg.MaxRetry)
	}
	b := make([]byte, wire.MaxDatagram)
	n, err := m.Encode(b)
	if err != nil {
		return nil
	}
	return b[:n]
}

// restart begins a new handshake. c.mu is held.
func (c *Client) restart(now time.Time, count bool) {
	if count {
		c.stats.Restarts++
	}
	c.st = clientState{phase: phaseHello, heard: now, next: now, backoff: c.cfg.Retry}
	rand.Read(c.st.nonce[:])
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
		// Once per batch, not per datagram: anything from the edge is a
		// sign of life.
		c.mu.Lock()
		c.st.heard = time.Now()
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
	now := time.Now()
	switch h.Type {
	case wire.TypeCookie:
		var m wire.Cookie
		if m.Decode(d) == nil && m.Nonce == c.st.nonce && c.st.phase == phaseHello {
			c.st.cookie, c.st.phase, c.st.next, c.st.backoff = m.Cookie, phaseSubscribe, now, c.cfg.Retry
			c.wake()
		}
	case wire.TypeSubscribed:
		var m wire.Subscribed
		if m.Decode(d) == nil && m.Nonce == c.st.nonce && c.st.phase == phaseSubscribe {
			c.st.phase, c.st.session = phaseSubscribed, m.SessionID
			c.st.keepalive = time.Duration(m.KeepaliveMs) * time.Millisecond
			c.st.expiry = time.Duration(m.ExpiryMs) * time.Millisecond
			c.st.next = now.Add(c.st.keepalive)
			c.stats.Subscriptions++
			c.log.Info("subscriber: subscribed", "streams", m.Streams, "keepalive", c.st.keepalive)
		}
	case wire.TypeRefused:
		var m wire.Refused
		if m.Decode(d) != nil || (m.Nonce != c.st.nonce && m.Nonce != [wire.NonceLen]byte{}) {
			return true
		}
		c.stats.Refused++
		c.log.Info("subscriber: refused", "reason", m.Reason)
		c.restart(now, true)
		if m.RetryAfterMs > 0 {
			c.st.next = now.Add(time.Duration(m.RetryAfterMs) * time.Millisecond)
		}
		c.wake()
	case wire.TypeKeepalive:
		// The echo: ReadBatch notes it was heard.
	}
	return true
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
		if n, err := (&wire.Leave{SessionID: c.st.session}).Encode(b[:]); err == nil {
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
