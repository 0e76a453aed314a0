package receiver

import (
	"context"
	"errors"
	"sync"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/wire"
)

// Source is where a receiver reads datagrams: a multicast socket
// (engine/udp), a unicast subscription (engine/unicast), or a test's
// in-memory pipe (engine/datagram/datagramtest).
type Source = datagram.Source

// readBatch is how many datagrams one read may take.
const readBatch = 16

// Run reads every source until ctx ends, handling each datagram, then
// closes the sources and returns nil; if a source fails first, it closes
// them all and returns that error. Truncated datagrams count as malformed.
//
// The sources' goroutines never check a signature: shard-root and body
// checks run on one more goroutine (see checks), so a RELEASE read behind
// a forged shard is not delayed by it.
func (r *Receiver) Run(ctx context.Context, srcs ...Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wake := make(chan struct{}, 1)
	r.checker.Store(&wake)
	var checker sync.WaitGroup
	checker.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				r.runChecks()
			}
		}
	})
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Go(func() { cancel(r.read(s)) })
	}
	<-ctx.Done()
	for _, s := range srcs {
		s.Close()
	}
	wg.Wait()
	checker.Wait()
	r.checker.Store(nil)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// read handles s's datagrams until a read fails, and returns that error.
func (r *Receiver) read(s Source) error {
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
				r.drops.add(reasonMalformed)
				continue
			}
			r.Handle(m.Buf[:m.N], m.Arrival, m.From)
		}
	}
}
