package subscribertest

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
)

// depth is how many datagrams each direction holds before it drops, as a
// socket buffer does.
const depth = 64

// Conn is an in-memory subscriber.Conn. Its methods are safe for concurrent
// use.
type Conn struct {
	edge     netip.AddrPort
	toClient chan []byte
	toEdge   chan []byte
	closed   chan struct{}
	once     sync.Once
}

// New returns a Conn to an edge at edge: messages the client reads come
// from it.
func New(edge netip.AddrPort) *Conn {
	return &Conn{edge: edge, toClient: make(chan []byte, depth), toEdge: make(chan []byte, depth), closed: make(chan struct{})}
}

// ReadBatch blocks until a datagram was delivered or Close, then fills ms
// with what is waiting (each cut to its Buf, Truncated then), stamped with
// time.Now. After Close it returns net.ErrClosed.
func (c *Conn) ReadBatch(ms []datagram.Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	var d []byte
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case d = <-c.toClient:
	}
	n := 0
	for {
		m := &ms[n]
		m.N = copy(m.Buf, d)
		m.Truncated = m.N < len(d)
		m.Arrival, m.From = time.Now(), c.edge
		n++
		if n == len(ms) {
			return n, nil
		}
		select {
		case d = <-c.toClient:
		default:
			return n, nil
		}
	}
}

// Write passes a copy of b to the edge's side (Written), dropping it if
// that side holds depth datagrams unread. After Close it returns
// net.ErrClosed.
func (c *Conn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case c.toEdge <- slices.Clone(b):
	default:
	}
	return len(b), nil
}

// Close makes ReadBatch and Write return net.ErrClosed. It may be called
// more than once.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Closed is closed by Close.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// Written delivers, in order, what the client wrote.
func (c *Conn) Written() <-chan []byte { return c.toEdge }

// Deliver passes a copy of d to the client, as if the edge sent it,
// dropping it if the client holds depth datagrams unread or is closed.
func (c *Conn) Deliver(d []byte) {
	select {
	case c.toClient <- slices.Clone(d):
	default:
	}
}
