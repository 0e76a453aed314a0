package receiver

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/wire"
)

// Source is where a receiver reads datagrams: a multicast socket
// (engine/udp), a unicast subscription (engine/unicast), or a test's
// in-memory pipe (engine/datagram/datagramtest).
type Source = datagram.Source

// readBatch is how many datagrams one read may take; shardQueueLen how many
// ANNOUNCE datagrams may wait for the shard goroutine.
const (
	readBatch     = 16
	shardQueueLen = 256
)

// Run reads every source until ctx ends, handling each datagram, then
// closes the sources and returns nil; if a source fails first, it closes
// them all and returns that error. Truncated datagrams count as malformed.
//
// Each source's goroutine handles RELEASEs itself and hands ANNOUNCE
// datagrams to one shard goroutine through a bounded queue (a full queue
// drops, counted as shard-queue-full), so that a RELEASE never waits
// behind a signature check.
func (r *Receiver) Run(ctx context.Context, srcs ...Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	q := newShardQueue()
	var shards sync.WaitGroup
	shards.Go(func() { q.serve(r) })
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Go(func() { cancel(r.read(s, q)) })
	}
	<-ctx.Done()
	for _, s := range srcs {
		s.Close()
	}
	wg.Wait()
	close(q.full)
	shards.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// shardQueue carries ANNOUNCE datagrams from the readers to the shard
// goroutine in buffers it recycles: full holds datagrams, free spare
// buffers.
type shardQueue struct {
	full, free chan []byte
}

func newShardQueue() *shardQueue {
	q := &shardQueue{full: make(chan []byte, shardQueueLen), free: make(chan []byte, shardQueueLen)}
	for range shardQueueLen {
		q.free <- make([]byte, 0, wire.DefaultMaxDatagram)
	}
	return q
}

// put queues a copy of d, or reports false when the queue is full.
func (q *shardQueue) put(d []byte) bool {
	select {
	case b := <-q.free:
		q.full <- append(b[:0], d...)
		return true
	default:
		return false
	}
}

// serve handles queued shards until full is closed.
func (q *shardQueue) serve(r *Receiver) {
	for b := range q.full {
		r.Handle(b, time.Time{}, netip.AddrPort{})
		q.free <- b
	}
}

// read handles s's datagrams until a read fails, and returns that error.
func (r *Receiver) read(s Source, q *shardQueue) error {
	ms := make([]datagram.Message, readBatch)
	for i := range ms {
		ms[i].Buf = make([]byte, wire.MaxDatagram+1)
	}
	for {
		n, err := s.ReadBatch(ms)
		if err != nil {
			return err
		}
		for _, m := range ms[:n] {
			if m.Truncated || m.N > wire.MaxDatagram {
				r.mu.Lock()
				r.drops.add(reasonMalformed)
				r.mu.Unlock()
				continue
			}
			d := m.Buf[:m.N]
			if h, err := wire.Peek(d); err == nil && h.Type == wire.TypeAnnounce {
				if !q.put(d) {
					r.drops.add(reasonQueueFull)
				}
				continue
			}
			r.Handle(d, m.Arrival, m.From)
		}
	}
}
