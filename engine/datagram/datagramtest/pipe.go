package datagramtest

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
)

// Pipe is an in-memory datagram.Source. Send queues datagrams without
// bound and never blocks; ReadBatch hands them out in order. Its contract
// is datagram.Source's:
//
//   - ReadBatch blocks until a datagram is queued, Fail is called or the
//     Pipe is closed; then it fills up to len(ms) messages from the queue.
//     A datagram longer than a message's Buf is cut to len(Buf) and marked
//     Truncated, as a socket does.
//   - After Fail(err), ReadBatch returns what is already queued, then err
//     on every call, as a socket that broke.
//   - After Close, ReadBatch returns net.ErrClosed, even with datagrams
//     still queued, and Send returns net.ErrClosed. Close may be called
//     more than once; Closed reports that it was.
//
// The zero Pipe is not usable; call New.
type Pipe struct {
	ready  chan struct{} // holds a token while the queue or err may be non-empty
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex
	queue []datagram.Message
	err   error
}

var _ datagram.Source = (*Pipe)(nil)

// New returns an empty, open Pipe.
func New() *Pipe {
	return &Pipe{ready: make(chan struct{}, 1), closed: make(chan struct{})}
}

// Send queues a copy of pkt, arriving at arrival (the zero Time: no kernel
// stamp) from from. It returns net.ErrClosed after Close.
func (p *Pipe) Send(pkt []byte, arrival time.Time, from netip.AddrPort) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed() {
		return net.ErrClosed
	}
	p.queue = append(p.queue, datagram.Message{Buf: append([]byte(nil), pkt...), N: len(pkt), Arrival: arrival, From: from})
	p.signal()
	return nil
}

// Fail makes ReadBatch return err once the queued datagrams are read.
func (p *Pipe) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
	p.signal()
}

// ReadBatch implements datagram.Source.
func (p *Pipe) ReadBatch(ms []datagram.Message) (int, error) {
	for {
		select {
		case <-p.closed:
			return 0, net.ErrClosed
		case <-p.ready:
		}
		if n, err := p.take(ms); n > 0 || err != nil {
			return n, err
		}
	}
}

// take fills ms from the queue, leaving the ready token behind if anything
// is left for the next read.
func (p *Pipe) take(ms []datagram.Message) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed() {
		return 0, net.ErrClosed
	}
	n := 0
	for ; n < len(ms) && len(p.queue) > 0; n++ {
		d := p.queue[0]
		p.queue[0] = datagram.Message{}
		p.queue = p.queue[1:]
		m := &ms[n]
		m.N = copy(m.Buf, d.Buf)
		m.Truncated = m.N < d.N
		m.Arrival, m.From = d.Arrival, d.From
	}
	if len(p.queue) > 0 || p.err != nil {
		p.signal()
	}
	if n == 0 && p.err != nil {
		return 0, p.err
	}
	return n, nil
}

// signal leaves a token for a reader; called with mu held.
func (p *Pipe) signal() {
	select {
	case p.ready <- struct{}{}:
	default:
	}
}

// Close makes a blocked ReadBatch return net.ErrClosed. It always returns
// nil.
func (p *Pipe) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// Closed reports whether Close was called.
func (p *Pipe) Closed() bool { return p.isClosed() }

// Done is closed when Close is called.
func (p *Pipe) Done() <-chan struct{} { return p.closed }

func (p *Pipe) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}
