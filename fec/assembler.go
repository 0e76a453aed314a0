package fec

import (
	"fmt"

	"github.com/klauspost/reedsolomon"

	"github.com/embargo-live/embargo/wire"
)

// RootVerifier checks the origin's signature over a shard's stream,
// period, geometry and Merkle root (seal.KeyRing implements it).
type RootVerifier interface {
	VerifyShardRoot(s *wire.Shard) error
}

// KeyKnower is a RootVerifier that can say cheaply whether it holds a key
// id at all (seal.KeyRing does): shards naming an unknown key are refused
// without a check and without spending the verification budget.
type KeyKnower interface {
	Knows(id [wire.KeyIDLen]byte) bool
}

// Assembler limits. Honest traffic needs at most streams × (window + 1)
// periods in flight; the budgets refuse new periods past that rather than
// evict one, so no arrival pattern can push out a live period.
const (
	// DefaultWindow is how far below its stream's newest genuine period a
	// period may be and still be assembled. It must cover the origin's
	// announce lead plus the catch-up depth (PROTOCOL.md §7.3).
	DefaultWindow = 32
	// DefaultMaxPeriods bounds the periods in flight across all streams.
	DefaultMaxPeriods = 1024
	// DefaultMaxPeriodBytes bounds one period's stored shards ((k+m)·size):
	// a 64 KiB body at 100 % parity with shard padding.
	DefaultMaxPeriodBytes = 160 << 10
	// DefaultMaxHeldBytes bounds the bytes held for all periods in flight.
	DefaultMaxHeldBytes = 16 << 20
	// DefaultRemember is how many rebuilt periods are remembered so that
	// their late shards are dropped cheaply.
	DefaultRemember = 1024
)

// Option configures an Assembler.
type Option func(*Assembler)

// WithWindow refuses (ErrStale) shards of periods more than n below the
// newest genuine period seen on their stream, and drops periods in flight
// that fall out of the window, so replayed old shards cannot hold memory.
func WithWindow(n uint64) Option { return func(a *Assembler) { a.window = n } }

// WithMaxPeriods bounds the periods in flight; past it new periods are
// refused (ErrBusy).
func WithMaxPeriods(n int) Option { return func(a *Assembler) { a.maxPeriods = max(1, n) } }

// WithMaxPeriodBytes bounds the bytes stored for one period ((k+m)·size).
func WithMaxPeriodBytes(n int) Option { return func(a *Assembler) { a.maxPeriodBytes = max(1, n) } }

// WithMaxHeldBytes bounds the bytes held for all periods in flight; past it
// new periods are refused (ErrBusy).
func WithMaxHeldBytes(n int) Option { return func(a *Assembler) { a.maxHeldBytes = max(1, n) } }

// WithRemember sets how many rebuilt periods are remembered.
func WithRemember(n int) Option { return func(a *Assembler) { a.remember = max(1, n) } }

type periodKey struct {
	stream uint32
	period uint64
}

// pending is one period in flight. Everything that identifies its shard
// set was covered by a signature that verified when it was created.
type pending struct {
	k, m, size, bodyLen int
	keyID               [wire.KeyIDLen]byte
	root                digest
	shards              [][]byte // nil: not yet received
	backing             []byte
	have                int
}

func (p *pending) matches(s *wire.Shard) bool {
	return int(s.K) == p.k && int(s.M) == p.m && int(s.ShardSize) == p.size &&
		int(s.BodyLen) == p.bodyLen && s.KeyID == p.keyID && s.Root == p.root
}

// Stats counts what an Assembler has done.
type Stats struct {
	Accepted  uint64 // shards stored
	Rebuilt   uint64 // bodies returned
	Evicted   uint64 // periods dropped unfinished because they fell out of the window
	Verified  uint64 // root signature checks made (one per period, plus forgeries)
	Failed    uint64 // of those, checks that failed (the root is then remembered)
	InFlight  int    // periods currently held
	HeldBytes int    // bytes currently held for shards
	// Remembered is how many failed roots are remembered now, and
	// Contested how many periods have unverified roots competing for checks.
	Remembered, Contested int
}

// Assembler rebuilds ANNOUNCE bodies from shards arriving in any order,
// duplicated, from several edges. It is not safe for concurrent use: a
// receiver owns one per reading goroutine.
type Assembler struct {
	verify         RootVerifier
	maxPeriods     int
	maxPeriodBytes int
	maxHeldBytes   int
	remember       int
	window         uint64
	held           int // bytes held for periods in flight

	newest  map[uint32]uint64 // per stream, the newest period with a verified root
	periods map[periodKey]*pending
	done    map[periodKey]struct{}
	doneLog []periodKey // ring of remembered completions
	doneAt  int
	coders  map[[2]int]reedsolomon.Encoder
	leaves  *leafHasher
	gate    gate
	stats   Stats

	// Checks deferred to the caller (WithAsyncChecks): by root, and in
	// order; pendingBytes is what their held shards take.
	async        bool
	checking     map[rootID]*deferredCheck
	checkQ       []*deferredCheck
	pendingBytes int
}

// NewAssembler returns an assembler that trusts the roots v accepts.
func NewAssembler(v RootVerifier, opts ...Option) *Assembler {
	a := &Assembler{
		verify:         v,
		maxPeriods:     DefaultMaxPeriods,
		maxPeriodBytes: DefaultMaxPeriodBytes,
		maxHeldBytes:   DefaultMaxHeldBytes,
		remember:       DefaultRemember,
		window:         DefaultWindow,
		newest:         make(map[uint32]uint64),
		periods:        make(map[periodKey]*pending),
		done:           make(map[periodKey]struct{}),
		coders:         make(map[[2]int]reedsolomon.Encoder),
		leaves:         newLeafHasher(),
		gate:           newGate(),
		checking:       make(map[rootID]*deferredCheck),
	}
	for _, o := range opts {
		o(a)
	}
	a.gate.start()
	return a
}

// Stats returns the counters so far.
func (a *Assembler) Stats() Stats {
	s := a.stats
	s.InFlight = len(a.periods)
	s.HeldBytes = a.held
	s.Remembered, s.Contested = len(a.gate.bad), len(a.gate.contests)
	return s
}

// Done reports whether the period was rebuilt (and is still remembered).
func (a *Assembler) Done(stream uint32, period uint64) bool {
	_, ok := a.done[periodKey{stream, period}]
	return ok
}

// Head returns the first n bytes of the body of a period in flight when
// the data shards that hold them have arrived (each proven against the
// period's verified root), or nil. The slice aliases the assembler's
// memory: it is valid until the next Add.
func (a *Assembler) Head(stream uint32, period uint64, n int) []byte {
	p := a.periods[periodKey{stream, period}]
	if p == nil || n > p.bodyLen || n < 1 {
		return nil
	}
	for i := 0; i*p.size < n; i++ {
		if p.shards[i] == nil {
			return nil
		}
	}
	return p.backing[:n]
}

// Add offers one decoded shard. It returns the rebuilt body (a fresh slice
// the caller owns) the first time the period has K genuine shards, nil
// while it has fewer, and an error saying why a shard was dropped. s's
// slices are copied, so the caller may reuse its buffer.
//
// The body's own stream and period are the caller's to compare with s's
// (PROTOCOL.md §3.2), after it decodes the body.
func (a *Assembler) Add(s *wire.Shard) ([]byte, error) { return a.AddFrom(s, Untrusted) }

// Trust is how far the caller trusts the source of a shard (AddFrom).
type Trust uint8

const (
	// Untrusted is any other source.
	Untrusted Trust = iota
	// Learnt is a source that proved itself: its RELEASEs opened
	// periods. An attacker can become one by replaying a released, hence
	// public, RELEASE before the edge's copy arrives.
	Learnt
	// Configured is an edge the caller was configured with.
	Configured
)

// AddFrom is Add of a shard from a source the caller trusts that far.
// Before its period has a verified root, a root seen from a more trusted
// source is checked before, and never pushed out by, roots seen only
// from less trusted ones (PROTOCOL.md §7.3).
func (a *Assembler) AddFrom(s *wire.Shard, trust Trust) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	key := periodKey{s.Stream, s.Period}
	if _, ok := a.done[key]; ok {
		return nil, ErrComplete
	}
	n, known := a.newest[s.Stream]
	if known && s.Period+a.window < n {
		return nil, ErrStale
	}
	if s.Shards()*int(s.ShardSize) > a.maxPeriodBytes {
		return nil, ErrTooLarge
	}
	// Most arrivals repeat a shard already held (carousel rounds, several
	// edges): answer them before hashing. A forgery at a held index is
	// refused the same way and stores nothing.
	p := a.periods[key]
	if p != nil {
		if !p.matches(s) {
			// The period has its verified root: another one is at best a
			// second genuine set (the first is kept), so it is not checked.
			return nil, ErrOtherRoot
		}
		if p.shards[s.Index] != nil {
			return nil, ErrDuplicate
		}
	} else if err := a.admit(key, s, n, known); err != nil {
		return nil, err
	}
	// The proof is cheap: check it before paying for a signature.
	if !verifyProof(&s.Root, int(s.Index), a.leaves.leaf(s.Data), s.Proof) {
		return nil, ErrBadProof
	}
	if p == nil {
		in := idOf(s)
		if c := a.checking[in]; c != nil {
			c.hold(a, s) // a shard of a root whose check is under way
			return nil, ErrCheckPending
		}
		var err error
		if p, err = a.verifyRoot(key, s, &in, trust); err != nil {
			return nil, err
		}
	}
	return a.store(key, p, int(s.Index), s.Data)
}

// store copies one proven shard into p and rebuilds the body once k are
// held.
func (a *Assembler) store(key periodKey, p *pending, index int, data []byte) ([]byte, error) {
	if p.shards[index] != nil {
		return nil, ErrDuplicate
	}
	slot := p.backing[index*p.size : (index+1)*p.size : (index+1)*p.size]
	copy(slot, data)
	p.shards[index] = slot
	p.have++
	a.stats.Accepted++
	if p.have < p.k {
		return nil, nil
	}
	body, err := a.rebuild(p)
	a.finish(key)
	if err != nil {
		return nil, err
	}
	a.stats.Rebuilt++
	return body, nil
}

// admit refuses, before any hashing, a shard of a period without a
// verified root that cannot be worth a check: past the horizon, naming a
// key the verifier does not hold, or carrying a root that already failed.
func (a *Assembler) admit(key periodKey, s *wire.Shard, newest uint64, known bool) error {
	if a.gate.beyond(key.stream, key.period, newest, known) {
		return ErrFuture
	}
	if k, ok := a.verify.(KeyKnower); ok && !k.Knows(s.KeyID) {
		return fmt.Errorf("%w: unknown key id %x", ErrForged, s.KeyID)
	}
	if id := idOf(s); a.gate.forged(&id) {
		return ErrRepeatForged
	}
	return nil
}

// verifyRoot spends the period's verification budget on the root most
// worth it (see gate.pick) and, if that root verifies, starts the period
// with it. It returns the pending period if s belongs to it.
func (a *Assembler) verifyRoot(key periodKey, s *wire.Shard, in *rootID, trust Trust) (*pending, error) {
	// The arrival counts even when no check can be queued now, so that a
	// root is ranked by what was seen of it, not by when checks were free.
	c, at := a.gate.see(key, in, s.Index, trust)
	if a.async && len(a.checkQ) >= maxPendingChecks && (len(a.checkQ) >= maxPendingChecks+maxContests || !a.gate.quiet(c, a.gate.now())) {
		return nil, ErrDeferred // a quiet period still gets its check queued
	}
	id, ok := a.gate.pick(c, at)
	if !ok {
		return nil, ErrDeferred
	}
	if a.async {
		return nil, a.deferCheck(key, &id, s, id == *in)
	}
	a.stats.Verified++
	if err := a.verify.VerifyShardRoot(id.shard()); err != nil {
		a.stats.Failed++
		a.gate.remember(&id)
		if id == *in {
			return nil, fmt.Errorf("%w: %w", ErrForged, err)
		}
		return nil, ErrDeferred
	}
	p, err := a.begin(key, &id)
	if err != nil {
		return nil, err
	}
	if id != *in {
		return nil, ErrOtherRoot
	}
	return p, nil
}

// begin starts key's period with its verified root id.
func (a *Assembler) begin(key periodKey, id *rootID) (*pending, error) {
	if len(a.periods) >= a.maxPeriods || a.held+(int(id.k)+int(id.m))*int(id.size) > a.maxHeldBytes {
		return nil, ErrBusy
	}
	a.gate.verified(key, a.advance(key.stream, key.period))
	return a.start(key, id), nil
}

// advance records period as seen on stream and drops the stream's periods
// in flight that fall out of the window below it. It reports whether
// period is the stream's new newest.
func (a *Assembler) advance(stream uint32, period uint64) bool {
	if n, ok := a.newest[stream]; ok && period <= n {
		return false
	}
	a.newest[stream] = period
	for k, p := range a.periods {
		if k.stream == stream && k.period+a.window < period {
			a.drop(k, p)
			a.stats.Evicted++
		}
	}
	if period > a.window {
		a.gate.forget(stream, period-a.window)
	}
	return true
}

// start creates a pending period for the verified root id.
func (a *Assembler) start(key periodKey, id *rootID) *pending {
	n := int(id.k) + int(id.m)
	p := &pending{
		k: int(id.k), m: int(id.m), size: int(id.size), bodyLen: int(id.bodyLen),
		keyID: id.keyID, root: id.root,
		shards:  make([][]byte, n),
		backing: make([]byte, n*int(id.size)),
	}
	a.periods[key] = p
	a.held += len(p.backing)
	return p
}

func (a *Assembler) drop(key periodKey, p *pending) {
	delete(a.periods, key)
	a.held -= len(p.backing)
}

// finish forgets a period's shards and remembers it as rebuilt.
func (a *Assembler) finish(key periodKey) {
	a.drop(key, a.periods[key])
	if len(a.doneLog) < a.remember {
		a.doneLog = append(a.doneLog, key)
	} else {
		delete(a.done, a.doneLog[a.doneAt])
		a.doneLog[a.doneAt] = key
		a.doneAt = (a.doneAt + 1) % a.remember
	}
	a.done[key] = struct{}{}
}

func (a *Assembler) rebuild(p *pending) ([]byte, error) {
	shards := make([][]byte, len(p.shards))
	for i, s := range p.shards {
		if s != nil {
			shards[i] = s
		} else {
			shards[i] = p.backing[i*p.size : i*p.size : (i+1)*p.size] // empty, with room
		}
	}
	if !dataComplete(shards, p.k) {
		enc, err := a.coder(p.k, p.m)
		if err != nil {
			return nil, err
		}
		if err := enc.ReconstructData(shards); err != nil {
			return nil, fmt.Errorf("fec: reconstruct: %w", err)
		}
	}
	body := make([]byte, 0, p.bodyLen)
	for i := 0; i < p.k && len(body) < p.bodyLen; i++ {
		body = append(body, shards[i][:min(p.size, p.bodyLen-len(body))]...)
	}
	return body, nil
}

func dataComplete(shards [][]byte, k int) bool {
	for _, s := range shards[:k] {
		if len(s) == 0 {
			return false
		}
	}
	return true
}

// coder returns a cached Reed–Solomon coder for (k, m); the cache holds at
// most as many geometries as periods may be in flight.
func (a *Assembler) coder(k, m int) (reedsolomon.Encoder, error) {
	if enc, ok := a.coders[[2]int{k, m}]; ok {
		return enc, nil
	}
	enc, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGeometry, err)
	}
	if len(a.coders) >= a.maxPeriods {
		clear(a.coders)
	}
	a.coders[[2]int{k, m}] = enc
	return enc, nil
}
