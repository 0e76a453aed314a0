package fec

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// The verification gate decides which shard roots the assembler pays a
// signature check for before a period has a verified root (PROTOCOL.md
// §7.3, §9.1). A root that failed is remembered, so resending it costs a
// map lookup. Unknown roots compete per period for the checks a budget
// allows, ranked so that an attacker cannot outbid the genuine root
// however slowly the checks run: a root seen from a source the caller
// trusts (a configured edge, or one whose RELEASEs opened periods) ranks
// above every root seen only from other addresses — it is neither evicted
// by them nor checked after them — and among equals a root ranks by the
// distinct shard indices proven against it, so resending a shard counts
// nothing. Roots seen at one index only draw on a small budget of their
// own, so a flood of them costs little.

// Gate defaults.
const (
	// DefaultRememberForged bounds the failed roots remembered (about 200
	// bytes each).
	DefaultRememberForged = 4096
	// DefaultPeriodChecks is the signature checks a second one period's
	// unverified roots may cost, and DefaultPeriodBurst how many it may
	// spend at once.
	DefaultPeriodChecks = 12_000
	DefaultPeriodBurst  = 64
	// DefaultFirstSightChecks and DefaultFirstSightBurst bound, within
	// those, the checks of roots seen at one shard index only.
	DefaultFirstSightChecks = 100
	DefaultFirstSightBurst  = 8
	// DefaultGlobalChecks and DefaultGlobalBurst bound the checks across all
	// periods: about 0.7 of a core at 60 µs a check.
	DefaultGlobalChecks = 12_000
	DefaultGlobalBurst  = 256
	// DefaultHorizon is how far above its stream's newest verified period a
	// shard's period may be: twice the origin's announce lead. Shards past
	// it are dropped before any check while the newest is fresh.
	DefaultHorizon = 2 * wire.MaxAnnounceLead
	// DefaultHorizonFresh is how long the stream's newest verified period
	// keeps the horizon closed. A receiver that saw no genuine root for
	// longer (a network outage) accepts any period again, under the global
	// budget, so it can recover.
	DefaultHorizonFresh = 30 * time.Second
	// candidates is how many unverified roots one period tracks, and
	// maxContests how many periods may have unverified roots at once.
	candidates  = 16
	maxContests = 64
	// quietGap: a period that had no check for this long may have one
	// without the budget shared by all periods, so that a flood aimed at
	// other periods cannot drain the checks a quiet one needs.
	quietGap = 50 * time.Millisecond
)

// WithBudget sets the signature checks a second (and the burst) one
// period's unverified roots may cost, those of its roots seen at one index,
// and those across all periods.
func WithBudget(perPeriod, periodBurst, firstSight, firstSightBurst, global, globalBurst int) Option {
	b := func(rate, burst int) budget {
		return budget{rate: float64(max(1, rate)), burst: float64(max(1, burst))}
	}
	return func(a *Assembler) {
		a.gate.period, a.gate.first, a.gate.global = b(perPeriod, periodBurst), b(firstSight, firstSightBurst), b(global, globalBurst)
	}
}

// WithHorizon sets how far above its stream's newest verified period a
// shard may be, and how long that newest stays fresh enough to hold the
// horizon.
func WithHorizon(periods uint64, fresh time.Duration) Option {
	return func(a *Assembler) { a.gate.horizon, a.gate.fresh = periods, int64(fresh) }
}

// WithRememberForged bounds the failed roots remembered.
func WithRememberForged(n int) Option { return func(a *Assembler) { a.gate.maxBad = max(1, n) } }

// WithClock sets the monotonic clock (ns) budgets refill by; the default is
// the process's monotonic clock. A test seam.
func WithClock(now func() int64) Option { return func(a *Assembler) { a.gate.now = now } }

// rootID is everything the origin's root signature covers, and the
// signature: two shards with equal rootIDs pass or fail the check alike.
type rootID struct {
	stream    uint32
	period    uint64
	k, m      uint8
	size      uint16
	bodyLen   uint32
	keyID     [wire.KeyIDLen]byte
	root      digest
	signature [wire.SigLen]byte
}

func idOf(s *wire.Shard) rootID {
	return rootID{s.Stream, s.Period, s.K, s.M, s.ShardSize, s.BodyLen, s.KeyID, s.Root, s.Sig}
}

// shard is the part of a wire.Shard that a root check reads.
func (id *rootID) shard() *wire.Shard {
	return &wire.Shard{
		Header: wire.Header{Type: wire.TypeAnnounce, Stream: id.stream, Period: id.period},
		K:      id.k, M: id.m, ShardSize: id.size, BodyLen: id.bodyLen,
		KeyID: id.keyID, Root: id.root, Sig: id.signature,
	}
}

// budget is a token bucket's parameters; bucket its state.
type budget struct{ rate, burst float64 }

type bucket struct {
	tokens float64
	at     int64
}

// refill brings b up to date at now and returns its tokens.
func (b *bucket) refill(now int64, p budget) float64 {
	if dt := now - b.at; dt > 0 {
		b.tokens = min(p.burst, b.tokens+float64(dt)*p.rate/float64(time.Second))
	}
	b.at = now
	return b.tokens
}

// candidate is an unverified root of a period: how far the sources that
// sent its shards are trusted, and the distinct indices proven against it.
type candidate struct {
	id       rootID
	trust    Trust // the most trusted source it was seen from
	distinct uint16
	seen     [(wire.MaxShards + 63) / 64]uint64 // indices, a bit each
}

// outranks reports whether c is worth a check before d: seen from a more
// trusted source, then more distinct indices.
func (c *candidate) outranks(d *candidate) bool {
	if c.trust != d.trust {
		return c.trust > d.trust
	}
	return c.distinct > d.distinct
}

// see counts one arrival of the candidate's shard at index from a source
// trusted that far: only a new index or a more trusted source raises its
// rank.
func (c *candidate) see(index uint8, trust Trust) {
	c.trust = max(c.trust, trust)
	if w, bit := index/64, uint64(1)<<(index%64); c.seen[w]&bit == 0 {
		c.seen[w] |= bit
		c.distinct++
	}
}

// contest is one period's unverified roots and its budgets.
type contest struct {
	cands       []candidate
	bucket      bucket // every check
	firstBucket bucket // checks of roots seen at one index
	last        int64  // when the last check was picked; -1: never
}

type gate struct {
	now                   func() int64
	period, first, global budget
	globalBucket          bucket
	horizon               uint64
	fresh                 int64
	maxBad                int
	bad                   map[rootID]struct{}
	badLog                []rootID
	badAt                 int
	contests              map[periodKey]*contest
	newestAt              map[uint32]int64 // when each stream's newest verified period advanced
	rng                   *rand.Rand
}

func newGate() gate {
	start := time.Now()
	return gate{
		now:      func() int64 { return int64(time.Since(start)) },
		period:   budget{DefaultPeriodChecks, DefaultPeriodBurst},
		first:    budget{DefaultFirstSightChecks, DefaultFirstSightBurst},
		global:   budget{DefaultGlobalChecks, DefaultGlobalBurst},
		horizon:  DefaultHorizon,
		fresh:    int64(DefaultHorizonFresh),
		maxBad:   DefaultRememberForged,
		bad:      make(map[rootID]struct{}),
		contests: make(map[periodKey]*contest),
		newestAt: make(map[uint32]int64),
		rng:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (g *gate) start() { g.globalBucket = bucket{tokens: g.global.burst, at: g.now()} }

// beyond reports whether period is past the horizon of a stream whose
// newest verified period is newest and fresh.
func (g *gate) beyond(stream uint32, period, newest uint64, known bool) bool {
	if !known || period <= newest+g.horizon {
		return false
	}
	return g.now()-g.newestAt[stream] <= g.fresh
}

func (g *gate) forged(id *rootID) bool {
	_, ok := g.bad[*id]
	return ok
}

// remember records a root whose check failed, forgetting the oldest past
// the bound.
func (g *gate) remember(id *rootID) {
	if len(g.badLog) < g.maxBad {
		g.badLog = append(g.badLog, *id)
	} else {
		delete(g.bad, g.badLog[g.badAt])
		g.badLog[g.badAt] = *id
		g.badAt = (g.badAt + 1) % g.maxBad
	}
	g.bad[*id] = struct{}{}
}

// see counts one arrival of id's shard at index, from a trusted source or
// not, in key's contest, and returns the contest and id's place in it (-1:
// none).
func (g *gate) see(key periodKey, id *rootID, index uint8, trust Trust) (*contest, int) {
	c := g.contest(key)
	return c, c.count(g.rng, id, index, trust)
}

// pick returns the root of c to check now, if the budgets allow one: the
// highest ranked (the arriving one, at in, on a tie; else the longest
// waiting). A root seen at one index only also needs the period's
// first-sight budget, so a flood of roots each sent once costs few checks,
// and the rest wait for a root with a second index.
func (g *gate) pick(c *contest, in int) (rootID, bool) {
	now := g.now()
	quiet := g.quiet(c, now)
	if c.bucket.refill(now, g.period) < 1 || g.globalBucket.refill(now, g.global) < 1 && !quiet {
		return rootID{}, false
	}
	best := max(in, 0)
	for i := range c.cands {
		if c.cands[i].outranks(&c.cands[best]) {
			best = i
		}
	}
	if c.cands[best].distinct < 2 {
		if c.firstBucket.refill(now, g.first) < 1 {
			return rootID{}, false
		}
		c.firstBucket.tokens--
	}
	c.bucket.tokens--
	g.globalBucket.tokens = max(0, g.globalBucket.tokens-1)
	c.last = now
	out := c.cands[best].id
	c.cands = slices.Delete(c.cands, best, best+1) // the rest keep their order: oldest first
	return out, true
}

// quiet reports whether c had no check for quietGap: its next check needs
// no token of the budget shared by all periods (at most 20 a second a
// period, past the shared budget).
func (g *gate) quiet(c *contest, now int64) bool {
	return c.last < 0 || now-c.last >= int64(quietGap)
}

// contest returns key's contest, making one; past maxContests a random one
// is dropped (its counts only: nothing verified is lost), one with no root
// from a trusted source if there is such.
func (g *gate) contest(key periodKey) *contest {
	if c := g.contests[key]; c != nil {
		return c
	}
	if len(g.contests) >= maxContests {
		victim, found := periodKey{}, false
		for k, c := range g.contests {
			victim, found = k, true
			if !slices.ContainsFunc(c.cands, func(d candidate) bool { return d.trust > Untrusted }) {
				break
			}
		}
		if found {
			delete(g.contests, victim)
		}
	}
	now := g.now()
	c := &contest{bucket: bucket{tokens: g.period.burst, at: now}, firstBucket: bucket{tokens: g.first.burst, at: now}, last: -1}
	g.contests[key] = c
	return c
}

// count adds one arrival of id's shard at index and returns id's place,
// or -1 if it has none. A new root takes a free place or that of a
// lowest-ranked root (chosen at random among equals) — never that of a
// root seen from a trusted source unless it comes from one too. So a
// flood from other addresses cannot push out the trusted edge's root,
// and repeats push out nothing.
func (c *contest) count(rng *rand.Rand, id *rootID, index uint8, trust Trust) int {
	for i := range c.cands {
		if c.cands[i].id == *id {
			c.cands[i].see(index, trust)
			return i
		}
	}
	fresh := candidate{id: *id}
	fresh.see(index, trust)
	if len(c.cands) < candidates {
		c.cands = append(c.cands, fresh)
		return len(c.cands) - 1
	}
	low, ties := 0, 0
	for i := range c.cands {
		switch {
		case c.cands[low].outranks(&c.cands[i]):
			low, ties = i, 1
		case !c.cands[i].outranks(&c.cands[low]):
			ties++
			if rng.IntN(ties) == 0 {
				low = i
			}
		}
	}
	if c.cands[low].trust > trust {
		return -1
	}
	c.cands = append(slices.Delete(c.cands, low, low+1), fresh)
	return len(c.cands) - 1
}

// verified forgets key's contest and records that stream advanced now.
func (g *gate) verified(key periodKey, advanced bool) {
	delete(g.contests, key)
	if advanced {
		g.newestAt[key.stream] = g.now()
	}
}

// forget drops the contests of stream below min.
func (g *gate) forget(stream uint32, below uint64) {
	for k := range g.contests {
		if k.stream == stream && k.period < below {
			delete(g.contests, k)
		}
	}
}
