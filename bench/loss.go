package bench

import (
	mrand "math/rand/v2"
	"sync/atomic"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/receiver"
)

// Loss drops each datagram a receiver reads with probability p, as a
// last-mile link would, in user space (no privileges), and counts what it
// saw and dropped across every receiver it wraps.
type Loss struct {
	p          float64
	seed       uint64
	lost, seen atomic.Int64
}

// NewLoss returns a Loss dropping with probability p; seed makes the
// drops repeatable (receiver i draws from its own stream of seed).
func NewLoss(p float64, seed uint64) *Loss { return &Loss{p: p, seed: seed} }

// Wrap returns receiver i's source s behind the loss.
func (l *Loss) Wrap(i int, s receiver.Source) receiver.Source {
	return &lossySource{Source: s, l: l, rng: mrand.New(mrand.NewPCG(l.seed, uint64(i)))}
}

// Lost is how many datagrams were dropped so far.
func (l *Loss) Lost() int64 { return l.lost.Load() }

// Seen is how many datagrams were read so far, dropped ones included.
func (l *Loss) Seen() int64 { return l.seen.Load() }

type lossySource struct {
	receiver.Source
	l   *Loss
	rng *mrand.Rand
}

func (s *lossySource) ReadBatch(ms []datagram.Message) (int, error) {
	for {
		n, err := s.Source.ReadBatch(ms)
		if err != nil {
			return 0, err
		}
		kept := datagram.Keep(ms, n, func(*datagram.Message) bool { return s.rng.Float64() >= s.l.p })
		// Once per batch: the counters are shared by every receiver.
		s.l.seen.Add(int64(n))
		s.l.lost.Add(int64(n - kept))
		if kept > 0 {
			return kept, nil
		}
	}
}
