package receiver

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// onShard feeds one subscribed shard from src to the assembler. It reports
// whether a signature check became due: a root check the assembler
// deferred, or a body it rebuilt. Called with shardMu held, not mu.
//
// A shard from a configured edge ranks its root above roots seen only
// from other addresses while the period awaits its verified root, and
// one from a learnt source (whose RELEASEs opened periods, the early
// queue's notion, keepEarly) above roots seen only from unproven ones,
// so a flood of forged roots from elsewhere cannot outbid the genuine one
// however slowly checks run (PROTOCOL.md §9.1).
func (r *Receiver) onShard(s *wire.Shard, src netip.Addr) bool {
	k := key{s.Stream, s.Period}
	r.mu.Lock()
	ok, trust := r.admit(k), fec.Untrusted
	switch {
	case r.sources[src]:
		trust = fec.Configured
	case r.proven[src]:
		trust = fec.Learnt
	}
	r.mu.Unlock()
	if !ok {
		return false
	}
	body, err := r.asm.AddFrom(s, trust)
	switch {
	case errors.Is(err, fec.ErrCheckPending):
		return true // counted when the check is done
	case err != nil:
		r.drops.add(assemblyReason(err))
	case body != nil:
		r.rebuilt = append(r.rebuilt, rebuilt{k, body})
		return true
	default:
		r.learnHead(k)
	}
	return false
}

func assemblyReason(err error) reason {
	switch {
	case errors.Is(err, fec.ErrDuplicate), errors.Is(err, fec.ErrComplete):
		return reasonDuplicate
	case errors.Is(err, fec.ErrBadProof):
		return reasonBadProof
	case errors.Is(err, fec.ErrRepeatForged):
		return reasonForgedRepeat
	case errors.Is(err, fec.ErrForged):
		return reasonForged
	case errors.Is(err, fec.ErrOtherRoot):
		return reasonOtherRoot
	case errors.Is(err, fec.ErrDeferred):
		return reasonUnverified
	case errors.Is(err, fec.ErrFuture):
		return reasonFuture
	case errors.Is(err, fec.ErrStale):
		return reasonOld
	case errors.Is(err, fec.ErrBusy), errors.Is(err, fec.ErrTooLarge):
		return reasonBusy
	}
	return reasonMalformed
}

// learnHead reads the commitment from the period's first data shard, once
// the assembler holds it, so that RELEASEs arriving before the whole body
// are checked at once: a forged secret is refused rather than held, and
// cannot push the genuine one out of the early queue. The shard is proven
// against the origin-signed root, so its bytes are the origin's; the body's
// own signature is still checked when it is whole. Called with shardMu.
func (r *Receiver) learnHead(k key) {
	r.mu.Lock()
	_, known := r.heads[k]
	r.mu.Unlock()
	if known {
		return
	}
	head := r.asm.Head(k.stream, k.period, wire.BodyFixedLen)
	if head == nil {
		return
	}
	b := new(wire.Body)
	if b.DecodeHead(head) != nil || b.Stream != k.stream || b.Period != k.period {
		return // the whole body will be refused as bad-body
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.done[k]; ok || len(r.heads) >= maxBodies {
		return
	}
	r.heads[k] = b
	list := r.early[k]
	var kept []early
	for _, e := range list {
		if seal.CheckRK(b, &e.rel.RK) {
			kept = append(kept, e)
		} else {
			r.drops.add(reasonWrongRK)
		}
	}
	r.forgetEarly(list)
	r.earlyN += len(kept)
	for i := range kept {
		r.earlyFrom[kept[i].source()]++
	}
	if len(kept) == 0 {
		delete(r.early, k)
	} else {
		r.early[k] = kept
	}
}

// onBody checks a rebuilt body and holds it for its RELEASE, which may
// already be waiting. A signature is checked holding neither lock.
func (r *Receiver) onBody(k key, body []byte) {
	h := &held{body: body}
	if err := h.b.Decode(body); err != nil || h.b.Stream != k.stream || h.b.Period != k.period {
		r.drops.add(reasonBadBody)
		return
	}
	// The root's verified signature already covers these bytes (every
	// shard was proven against it); the body's own is checked on request.
	if r.cfg.CheckBodySignature {
		r.bodyChecks.Add(1)
		if err := r.cfg.Trusted.VerifyAnnounce(body, &h.b); err != nil {
			r.drops.add(reasonBadSignature)
			return
		}
	}
	if age := r.cfg.MaxAge; age > 0 && h.b.PresentAt < r.nowTAI()-int64(age) {
		r.drops.add(reasonOld)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.done[k]; ok {
		r.drops.add(reasonDuplicate)
		return
	}
	r.advance(k)
	delete(r.heads, k)
	if len(r.bodies) >= maxBodies {
		r.drops.add(reasonBusy)
		return
	}
	r.bodies[k] = h
	waiting := r.early[k]
	delete(r.early, k)
	r.forgetEarly(waiting)
	for _, e := range waiting {
		if r.tryRelease(k, h, &e.rel, e.arrival, e.from) {
			return
		}
	}
}

// onRelease opens the held body with the RELEASE's secret, or keeps the
// RELEASE (bounded) until the body is rebuilt.
func (r *Receiver) onRelease(rel *wire.Release, arrival stamp, from netip.AddrPort) {
	k := key{rel.Stream, rel.Period}
	if !r.admit(k) {
		return
	}
	if h := r.bodies[k]; h != nil {
		r.tryRelease(k, h, rel, arrival, from)
		return
	}
	r.keepEarly(k, rel, arrival, from)
}

// keepEarly holds a RELEASE whose body is not yet rebuilt, bounded, so
// that whichever secret is genuine opens the body when it comes (its
// commitment refuses the rest then, one hash each). Before the body
// nothing tells a forged secret from the genuine one, so a flood is held
// off by its source instead (PROTOCOL.md §9.1): a source address holds
// at most maxEarlyPerSource secrets of a period, and when a period or the
// whole queue is full a new secret takes the place of one from a less
// trusted source (one never proven to send genuine RELEASEs) or from a
// source holding at least two more than its own would; failing both, it
// is dropped. The genuine edge's secret, alone from its address, is so
// never pushed out by RELEASEs from other addresses.
func (r *Receiver) keepEarly(k key, rel *wire.Release, arrival stamp, from netip.AddrPort) {
	if head := r.heads[k]; head != nil && !seal.CheckRK(head, &rel.RK) {
		r.drops.add(reasonWrongRK) // the commitment is known: no need to hold it
		return
	}
	list := r.early[k]
	if slices.ContainsFunc(list, func(e early) bool { return e.rel.RK == rel.RK }) {
		r.drops.add(reasonDuplicate) // held already: copies cost no slot
		return
	}
	if r.tooFar(k) {
		r.drops.add(reasonFuture)
		return
	}
	e := early{rel: *rel, arrival: arrival, from: from}
	src := e.source()
	mine, last := 0, -1
	for i := range list {
		if list[i].source() == src {
			mine, last = mine+1, i
		}
	}
	if mine >= maxEarlyPerSource {
		// The source's first secret stays; its newest is replaced.
		r.drops.add(reasonBusy)
		list[last] = e
		return
	}
	if len(list) >= maxEarlyPerPeriod || r.earlyN >= maxEarly {
		if !r.evictEarly(k, len(list) < maxEarlyPerPeriod, src) {
			r.drops.add(reasonBusy)
			return
		}
		list = r.early[k]
	}
	r.early[k] = append(list, e)
	r.earlyN++
	r.earlyFrom[src]++
}

// evictEarly makes room for a secret from src in period k's queue (or,
// with anywhere, in any period's) by dropping a held one whose source is
// less trusted or holds at least two more, and reports whether it did.
func (r *Receiver) evictEarly(k key, anywhere bool, src netip.Addr) bool {
	trusted, n := r.proven[src], r.earlyFrom[src]
	// worse reports whether a held secret from a is a better victim than
	// one from b: a less trusted source, then one holding more.
	worse := func(a, b netip.Addr) bool {
		if r.proven[a] != r.proven[b] {
			return !r.proven[a]
		}
		return r.earlyFrom[a] > r.earlyFrom[b]
	}
	var vk key
	vi := -1
	consider := func(k key, list []early) {
		for i := range list {
			if vi < 0 || worse(list[i].source(), r.early[vk][vi].source()) {
				vk, vi = k, i
			}
		}
	}
	if anywhere {
		for k, list := range r.early {
			consider(k, list)
		}
	} else {
		consider(k, r.early[k])
	}
	if vi < 0 {
		return false
	}
	v := r.early[vk][vi].source()
	if !(trusted && !r.proven[v]) && (r.proven[v] != trusted || r.earlyFrom[v] < n+2) {
		return false
	}
	list := r.early[vk]
	r.forgetEarly(list[vi : vi+1])
	if list = slices.Delete(list, vi, vi+1); len(list) == 0 {
		delete(r.early, vk)
	} else {
		r.early[vk] = list
	}
	r.drops.add(reasonBusy)
	return true
}

// forgetEarly accounts for held RELEASEs no longer held.
func (r *Receiver) forgetEarly(list []early) {
	r.earlyN -= len(list)
	for i := range list {
		src := list[i].source()
		if r.earlyFrom[src]--; r.earlyFrom[src] <= 0 {
			delete(r.earlyFrom, src)
		}
	}
}

// prove records src as a source of genuine RELEASEs: its held secrets
// outrank those of unproven sources. Learnt sources are bounded, the
// oldest forgotten first.
func (r *Receiver) prove(src netip.Addr) {
	if r.proven[src] {
		return
	}
	if len(r.learnt) >= maxProven {
		delete(r.proven, r.learnt[0])
		r.learnt = slices.Delete(r.learnt, 0, 1)
	}
	r.proven[src] = true
	r.learnt = append(r.learnt, src)
}

// tryRelease checks rel's secret against h's commitment and, if it opens,
// delivers the period. It reports whether the period is finished.
func (r *Receiver) tryRelease(k key, h *held, rel *wire.Release, arrival stamp, from netip.AddrPort) bool {
	if !seal.CheckRK(&h.b, &rel.RK) {
		r.drops.add(reasonWrongRK)
		return false
	}
	if rel.ReleaseAt != h.b.ReleaseAt {
		// Statistics only: the signed body's instant is the one that counts.
		r.drops.add(reasonReleaseAtMismatch)
	}
	r.finish(k)
	r.prove(from.Addr().Unmap())
	var err error
	r.opened, err = seal.OpenAnnounce(r.opened[:0], h.body, &h.b, &rel.RK)
	if err != nil {
		r.drops.add(reasonBadBody)
		return true
	}
	ev := Event{
		Stream: k.stream, Period: k.period, ReleaseAt: h.b.ReleaseAt, PresentAt: h.b.PresentAt,
		Arrival: arrival.at, ArrivalByKernel: arrival.kernel, RK: rel.RK, EdgeID: rel.EdgeID, From: from, CatchUp: rel.Flags&wire.FlagCatchUp != 0,
	}
	switch h.b.PayloadType {
	case wire.PayloadContentKeys:
		if r.cfg.Master == nil {
			r.drops.add(reasonNoMasterKey)
			return true
		}
		if ev.Keys, err = seal.UnwrapKeys(nil, r.cfg.Master, k.stream, k.period, r.opened); err != nil {
			r.drops.add(reasonUnwrap)
			return true
		}
	default:
		ev.Resource = append([]byte(nil), r.opened...)
	}
	ev.Opened = r.nowTAI()
	r.drops.delivered.Add(1)
	// A catch-up copy arrives late by design: it is no skew sample
	// (PROTOCOL.md §2.2).
	if !ev.CatchUp {
		r.skew.Add(time.Duration(ev.Arrival - ev.ReleaseAt))
	}
	r.released = append(r.released, ev)
	return true
}

// finish marks k delivered (or given up) and forgets its body and waiting
// releases.
func (r *Receiver) finish(k key) {
	r.done[k] = struct{}{}
	delete(r.bodies, k)
	delete(r.heads, k)
	r.forgetEarly(r.early[k])
	delete(r.early, k)
	r.advance(k)
}

// advance records k's period as seen on its stream and forgets what has
// fallen out of the window below the newest.
func (r *Receiver) advance(k key) {
	if n, ok := r.newest[k.stream]; ok && k.period <= n {
		return
	}
	r.newest[k.stream] = k.period
	for old := range r.done {
		if r.tooOld(old) {
			delete(r.done, old)
		}
	}
	for old := range r.bodies {
		if r.tooOld(old) {
			delete(r.bodies, old)
		}
	}
	for old := range r.heads {
		if r.tooOld(old) {
			delete(r.heads, old)
		}
	}
	for old, list := range r.early {
		if r.tooOld(old) || r.tooFar(old) {
			r.forgetEarly(list)
			delete(r.early, old)
		}
	}
}

// admit reports whether a datagram of k can still matter, counting it
// dropped if not: its period is neither finished nor below the window.
func (r *Receiver) admit(k key) bool {
	if _, ok := r.done[k]; ok {
		r.drops.add(reasonDuplicate)
		return false
	}
	if r.tooOld(k) {
		r.drops.add(reasonOld)
		return false
	}
	return true
}

// tooFar reports whether k is further ahead of its stream's newest period
// than an origin announces (twice the limit, for slack): a RELEASE for it
// can only be forged or misdirected, and must not hold a slot.
func (r *Receiver) tooFar(k key) bool {
	n, ok := r.newest[k.stream]
	return ok && k.period > n+2*wire.MaxAnnounceLead
}

// tooOld reports whether k is below its stream's window.
func (r *Receiver) tooOld(k key) bool {
	n, ok := r.newest[k.stream]
	return ok && k.period+window < n
}

func (r *Receiver) nowTAI() int64 { return r.cfg.TAIOffset.FromTime(r.cfg.Now()) }

// Stats are a receiver's counters.
type Stats struct {
	// Delivered is the number of Events handed to OnEvent.
	Delivered uint64
	// Drops counts dropped datagrams and undeliverable periods by reason
	// (see the Reason constants); duplicates are normal with repetition
	// and several edges.
	Drops map[string]uint64
	// Assembly is the shard assembler's own account; Assembly.Verified is
	// the shard-root signatures checked.
	Assembly fec.Stats
	// BodyChecks is the body signatures checked: one per rebuilt body with
	// Config.CheckBodySignature, none without (the root's covers it).
	BodyChecks uint64
	// Skew is the histogram of Arrival − ReleaseAt over delivered periods,
	// from the sockets' arrival stamps (the user-space twin of package
	// bpf's kernel histogram).
	Skew skew.Histogram
}

// SignatureChecks is every Ed25519 check the receiver made: shard roots
// and bodies.
func (s Stats) SignatureChecks() uint64 { return s.Assembly.Verified + s.BodyChecks }

// Stats returns a snapshot of the counters.
func (r *Receiver) Stats() Stats {
	r.shardMu.Lock()
	asm, checks := r.asm.Stats(), r.bodyChecks.Load()
	r.shardMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	h := skew.Histogram{Counts: append([]uint64(nil), r.skew.Counts...)}
	return Stats{Delivered: r.drops.delivered.Load(), Drops: r.drops.snapshot(), Assembly: asm, BodyChecks: checks, Skew: h}
}
