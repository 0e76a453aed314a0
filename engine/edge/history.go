package edge

import (
	"cmp"
	"slices"

	"github.com/embargo-live/embargo/engine/bundle"
)

// Released is a period the edge has released: what catch-up replays. It
// is immutable once published.
type Released struct {
	*bundle.Bundle
	// Release is the RELEASE datagram as first sent.
	Release []byte
	// CatchUp is the same datagram flagged as a catch-up copy, made once
	// for every late joiner.
	CatchUp []byte
}

// history is one stream's released periods, oldest first.
type history struct{ items []*Released }

func (h *history) add(r *Released, keep int) {
	i, _ := slices.BinarySearchFunc(h.items, r.Period, func(x *Released, p uint64) int { return cmp.Compare(x.Period, p) })
	h.items = slices.Insert(h.items, i, r)
	if over := len(h.items) - keep; over > 0 {
		h.items = slices.Delete(h.items, 0, over)
	}
}

func (h *history) get(period uint64) *Released {
	for _, r := range h.items {
		if r.Period == period {
			return r
		}
	}
	return nil
}

func (h *history) full(keep int) bool { return len(h.items) >= keep }

func (h *history) oldest() uint64 { return h.items[0].Period }

// Released returns the stream's released periods still kept, oldest first:
// at most Config.Keep, and only periods whose RELEASE has been sent.
func (e *Edge) Released(stream uint32) []*Released {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h := e.released[stream]; h != nil {
		return slices.Clone(h.items)
	}
	return nil
}

// Announced returns the ANNOUNCE datagrams of the stream's periods held for
// release, soonest first: what a subscriber arriving now needs to be ready
// for the next releases. That includes periods already taken for a release
// under way (the last moments before the instant), which are neither pending
// nor yet released: without them a subscriber arriving then would get the
// RELEASE but never the body. It never includes a release secret.
func (e *Edge) Announced(stream uint32) [][]byte {
	e.mu.Lock()
	var held []*bundle.Bundle
	for k, p := range e.pending {
		if k.stream == stream {
			held = append(held, p.b)
		}
	}
	for k, b := range e.inflight {
		if k.stream == stream {
			held = append(held, b)
		}
	}
	e.mu.Unlock()
	slices.SortFunc(held, func(a, b *bundle.Bundle) int { return cmp.Compare(a.Period, b.Period) })
	var out [][]byte
	for _, b := range held {
		out = append(out, b.Shards...)
	}
	return out
}

// CatchUp returns what a subscriber joining now is sent (PROTOCOL.md §7.3):
// for each stream, the ANNOUNCE shards and the catch-up RELEASE of its last
// n released periods, then the ANNOUNCEs of periods still to come. A
// released period whose releaseAt is after earliest (the clock's earliest
// possible time now) is left out, so catch-up is never early.
func CatchUp(h History, streams []uint32, n int, earliest int64) [][]byte {
	var dgs [][]byte
	for _, stream := range streams {
		rel := h.Released(stream)
		for _, r := range rel[max(0, len(rel)-n):] {
			if r.ReleaseAt > earliest {
				continue
			}
			dgs = append(dgs, r.Shards...)
			dgs = append(dgs, r.CatchUp)
		}
		dgs = append(dgs, h.Announced(stream)...)
	}
	return dgs
}
