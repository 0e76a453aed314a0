//go:build linux

package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// Helpers shared by the edge-failure and catch-up scenarios: an origin
// feeding edges their bundles as it would over CPIX, and independent
// observers of the RELEASE datagrams on the wire.

// seenRelease is one RELEASE datagram as an observer received it.
type seenRelease struct {
	Edge    uint32
	Period  uint64
	CatchUp bool  // flagged CATCH-UP
	SentAt  int64 // TAI ns, by the sending edge's clock
	Arrival int64 // TAI ns, the kernel's arrival stamp
}

// early reports whether the RELEASE arrived before its period's releaseAt
// by the true clock.
func (l *lab) early(r seenRelease) bool { return r.Arrival < l.sched.At(r.Period).ReleaseAt }

// releaseLog records the RELEASE datagrams some observer received. It is
// safe for concurrent use.
type releaseLog struct {
	mu        sync.Mutex
	seen      []seenRelease
	stampless int // RELEASEs the kernel gave no arrival stamp for
	bad       int // RELEASE-typed datagrams that did not decode
}

// record notes m if it is a RELEASE.
func (g *releaseLog) record(m *datagram.Message) {
	if m.Truncated {
		return
	}
	d := m.Buf[:m.N]
	if h, err := wire.Peek(d); err != nil || h.Type != wire.TypeRelease {
		return
	}
	var r wire.Release
	err := r.Decode(d)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err != nil:
		g.bad++
	case m.Arrival.IsZero():
		g.stampless++
	default:
		g.seen = append(g.seen, seenRelease{
			Edge: r.EdgeID, Period: r.Period, CatchUp: r.Flags&wire.FlagCatchUp != 0,
			SentAt: r.SentAt, Arrival: ptp.DefaultTAIOffset.FromTime(m.Arrival),
		})
	}
}

// all returns what was recorded so far, with the counts of RELEASEs that
// had no stamp or did not decode.
func (g *releaseLog) all() (seen []seenRelease, stampless, bad int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.seen), g.stampless, g.bad
}

// captureGroup listens to the group on h with a plain socket of its own,
// apart from any receiver, and records every RELEASE on it until the test
// ends.
func (l *lab) captureGroup(h *netns.Host) *releaseLog {
	l.t.Helper()
	src := l.multicast(h)
	g := &releaseLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ms := make([]datagram.Message, 16)
		for i := range ms {
			ms[i].Buf = make([]byte, wire.MaxDatagram+1)
		}
		for {
			n, err := src.ReadBatch(ms)
			if err != nil {
				return
			}
			for i := range n {
				g.record(&ms[i])
			}
		}
	}()
	l.t.Cleanup(func() { src.Close(); <-done })
	return g
}

// tappedSource is a receiver source whose RELEASEs an observer records as
// they are read, with the kernel stamps the receiver gets.
type tappedSource struct {
	receiver.Source
	log *releaseLog
}

// tapReleases wraps src (a unicast client, say) so that every RELEASE read
// through it is recorded in g too.
func tapReleases(src receiver.Source, g *releaseLog) receiver.Source {
	return &tappedSource{Source: src, log: g}
}

func (s *tappedSource) ReadBatch(ms []datagram.Message) (int, error) {
	n, err := s.Source.ReadBatch(ms)
	for i := range n {
		s.log.record(&ms[i])
	}
	return n, err
}

// feed plays the origin toward re, as keyserver.Issuer.Window answers an
// edge's poll: at once, the bundles of [from, to) an edge polling now gets
// (up to wire.MaxCatchUp released periods and every one due for
// announcement), then each later one when its announce time comes,
// looking every poll. It returns a func that stops the feeding (an edge
// that dies stops polling); the test's end stops it too.
func (l *lab) feed(re *runningEdge, from, to uint64, poll time.Duration) (stop func()) {
	l.t.Helper()
	// Issue every period here: lab.bundle may fail the test, which only the
	// test goroutine may do.
	bs := make(map[uint64]*bundle.Bundle, to-from)
	for n := from; n < to; n++ {
		bs[n] = l.bundle(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	add := func(now int64, next uint64) uint64 {
		first, end := l.sched.Due(now)
		lo := max(next, first-min(first, wire.MaxCatchUp))
		for n := lo; n < min(end, to); n++ {
			if err := re.Add(bs[n]); err != nil && !errors.Is(err, edge.ErrDuplicate) {
				l.t.Errorf("feed period %d: %v", n, err)
			}
		}
		return max(next, min(end, to))
	}
	next := add(truth(), from)
	go func() {
		defer close(done)
		t := time.NewTimer(poll)
		defer t.Stop()
		for next < to {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			next = add(truth(), next)
			t.Reset(poll)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	l.t.Cleanup(stop)
	return stop
}

// releaseSpread summarizes, per edge id, the earliest arrival of its
// RELEASEs minus their releaseAt (the closest any came to being early),
// over the datagrams keep selects.
func (l *lab) releaseSpread(seen []seenRelease, keep func(seenRelease) bool) map[uint32]time.Duration {
	out := map[uint32]time.Duration{}
	for _, r := range seen {
		if !keep(r) {
			continue
		}
		d := time.Duration(r.Arrival - l.sched.At(r.Period).ReleaseAt)
		if old, ok := out[r.Edge]; !ok || d < old {
			out[r.Edge] = d
		}
	}
	return out
}

// fmtSpread formats a releaseSpread as "e1=+1.2ms e2=…", by edge id.
func fmtSpread(m map[uint32]time.Duration) string {
	var b strings.Builder
	for _, id := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "e%d=%+.2fms", id, float64(m[id])/float64(time.Millisecond))
	}
	return b.String()
}
