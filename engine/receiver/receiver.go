package receiver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// ErrConfig is wrapped by the reasons New refuses a configuration.
var ErrConfig = errors.New("receiver: invalid config")

// Defaults for Config.
const (
	DefaultMaxAge = 10 * time.Minute
	// window is how many periods below a stream's newest are still
	// accepted: the announce lead plus catch-up, as PROTOCOL.md §7.3.
	window = 32
	// maxBodies bounds the verified bodies awaiting their RELEASE.
	maxBodies = 1024
	// maxEarly bounds RELEASEs kept until their body arrives,
	// maxEarlyPerPeriod the distinct secrets kept for one period and
	// maxEarlyPerSource those of one period from one source address
	// (keepEarly). maxProven bounds the sources learnt to send genuine
	// RELEASEs.
	maxEarly          = 256
	maxEarlyPerPeriod = 8
	maxEarlyPerSource = 2
	maxProven         = 16
)

// Config configures a Receiver. Trusted, Streams and OnEvent are required.
type Config struct {
	// Trusted holds the origin keys a body must be signed by.
	Trusted *seal.KeyRing
	// Master is the event's master key (seal.MasterKeyLen bytes). Without
	// it, content-key periods are counted as "no-master-key" and never
	// delivered; opaque resources need none.
	Master []byte
	// Streams are the streams to assemble; datagrams of others are dropped.
	Streams []uint32
	// Sources, if not empty, are the only addresses datagrams are taken
	// from: the edges this receiver is configured with (PROTOCOL.md §9.1).
	// A datagram from any other address, or with none, is dropped before
	// it is decoded, counted "foreign-source" (package bpf's filter drops
	// them in the kernel: bpf.Filter.SetSources). Their RELEASEs also
	// outrank any other in the queue of RELEASEs waiting for their body,
	// and their shards' roots any other awaiting a signature check.
	// Without Sources, any address is taken, and an address is trusted
	// there once a RELEASE from it opened a period.
	Sources []netip.Addr
	// OnEvent receives each period once, from the goroutine that handled
	// its completing datagram or ran the signature check that completed
	// it (Run's checker). It should return quickly.
	OnEvent func(Event)
	// MaxAge drops periods whose presentAt is older than this by the
	// device clock, so that replayed old periods are never delivered.
	// Zero means DefaultMaxAge; negative disables the check.
	MaxAge time.Duration
	// TAIOffset converts kernel arrival stamps (UTC) to TAI. Zero means
	// ptp.DefaultTAIOffset.
	TAIOffset ptp.TAIOffset
	// CheckBodySignature also verifies each rebuilt body's own signature.
	// It adds nothing to what is delivered: the body was rebuilt from
	// shards each proven against a root whose signature was verified, and
	// that signature covers the root over the body's bytes (PROTOCOL.md
	// §6.5). It costs a second Ed25519 check per period; for audits, and
	// the benchmark's baseline.
	CheckBodySignature bool
	// Now is the device clock as UTC; nil means time.Now. A test seam.
	Now    func() time.Time
	Logger *slog.Logger
}

// Event is one released period.
type Event struct {
	Stream    uint32
	Period    uint64
	ReleaseAt int64 // TAI ns, from the signed body
	PresentAt int64 // TAI ns, from the signed body
	// Keys are the content keys (payload type 1); Resource is the opaque
	// payload (type 2). Exactly one is set.
	Keys     []seal.ContentKey
	Resource []byte
	// Arrival is the kernel's arrival time of the first RELEASE that opened
	// the commitment (TAI ns), or the user-space time when the socket gave
	// no stamp. Arrival − ReleaseAt is this device's release skew.
	Arrival int64
	// ArrivalByKernel: Arrival is the kernel's receive stamp; false means
	// the source gave none (the portable path, a caller's transport) and
	// the receiver stamped the datagram when it handled it, so Arrival
	// also holds the time the datagram waited to be read.
	ArrivalByKernel bool
	// Opened is when the keys were ready (TAI ns, user space).
	Opened int64
	// RK is the release secret that opened the commitment (public once
	// released): package bpf's Filter.Confirm takes it, to count only the
	// genuine RELEASE's kernel stamp as skew.
	RK     [wire.RKLen]byte
	EdgeID uint32         // the edge whose RELEASE it was
	From   netip.AddrPort // and its address
	// CatchUp: the RELEASE was a catch-up copy for a late joiner, so its
	// arrival says nothing about release skew and Stats.Skew leaves it out.
	CatchUp bool
}

// Receiver turns datagrams into Events. Handle is safe for concurrent use.
//
// ANNOUNCE shards and RELEASEs take separate locks: shardMu serializes the
// assembler, mu the periods' state; signature checks run under neither. A
// RELEASE never waits for a signature check (PROTOCOL.md §9.1).
type Receiver struct {
	cfg     Config
	log     *slog.Logger
	streams map[uint32]bool
	sources map[netip.Addr]bool // Config.Sources, unmapped; nil: any
	drops   *counters

	shardMu sync.Mutex
	asm     *fec.Assembler
	shard   wire.Shard
	rebuilt []rebuilt // bodies awaiting their signature check

	// Signature checks run outside both locks, one at a time (checkMu): on
	// Run's checker goroutine, woken through checker, or, without Run, on
	// the goroutine whose Handle made them due.
	checkMu    sync.Mutex
	checker    atomic.Pointer[chan struct{}]
	verify     func(fec.Check) error // a shard-root check; a test seam
	bodyChecks atomic.Uint64         // body signatures checked

	mu        sync.Mutex
	bodies    map[key]*held
	heads     map[key]*wire.Body // commitments known from a first data shard, body not yet whole
	early     map[key][]early
	earlyN    int
	earlyFrom map[netip.Addr]int // held RELEASEs per source address
	// proven are the source addresses whose RELEASEs opened a commitment
	// (learnt, oldest first): their held secrets outrank others.
	proven   map[netip.Addr]bool
	learnt   []netip.Addr
	done     map[key]struct{}
	newest   map[uint32]uint64
	release  wire.Release
	opened   []byte
	released []Event // built under mu, delivered after
	skew     skew.Histogram
}

type key struct {
	stream uint32
	period uint64
}

// rebuilt is a body the assembler returned, not yet checked.
type rebuilt struct {
	k    key
	body []byte
}

type held struct {
	body []byte
	b    wire.Body
}

// early is a RELEASE that came before its body.
type early struct {
	rel     wire.Release
	arrival stamp
	from    netip.AddrPort
}

// source is the address the RELEASE came from, as the early queue counts
// it.
func (e *early) source() netip.Addr { return e.from.Addr().Unmap() }

// New checks cfg and returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	switch {
	case cfg.Trusted == nil:
		return nil, fmt.Errorf("%w: no trusted origin keys", ErrConfig)
	case len(cfg.Streams) == 0:
		return nil, fmt.Errorf("%w: no streams", ErrConfig)
	case cfg.OnEvent == nil:
		return nil, fmt.Errorf("%w: no OnEvent", ErrConfig)
	case cfg.Master != nil && len(cfg.Master) != seal.MasterKeyLen:
		return nil, fmt.Errorf("%w: master key of %d bytes, want %d", ErrConfig, len(cfg.Master), seal.MasterKeyLen)
	}
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.TAIOffset = cmp.Or(cfg.TAIOffset, ptp.DefaultTAIOffset)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		cfg:       cfg,
		log:       log,
		streams:   make(map[uint32]bool, len(cfg.Streams)),
		drops:     newCounters(),
		asm:       fec.NewAssembler(cfg.Trusted, fec.WithWindow(window), fec.WithClock(monotonic(cfg.Now)), fec.WithAsyncChecks()),
		bodies:    make(map[key]*held),
		heads:     make(map[key]*wire.Body),
		early:     make(map[key][]early),
		earlyFrom: make(map[netip.Addr]int),
		proven:    make(map[netip.Addr]bool),
		done:      make(map[key]struct{}),
		newest:    make(map[uint32]uint64),
	}
	r.verify = func(c fec.Check) error { return c.Verify(cfg.Trusted) }
	for _, s := range cfg.Streams {
		r.streams[s] = true
	}
	if len(cfg.Sources) > 0 {
		r.sources = make(map[netip.Addr]bool, len(cfg.Sources))
	}
	for _, a := range cfg.Sources {
		if !a.IsValid() {
			return nil, fmt.Errorf("%w: source %v is no address", ErrConfig, a)
		}
		a = a.Unmap().WithZone("") // a link-local edge matches on any interface, as in the kernel filter
		r.sources[a] = true
		r.proven[a] = true // configured: never forgotten, unlike learnt ones
	}
	return r, nil
}

// monotonic is a clock for the assembler's verification budgets: now's
// reading in ns, never going back (a stepped device clock only pauses the
// refill).
func monotonic(now func() time.Time) func() int64 {
	var mu sync.Mutex
	var last int64
	return func() int64 {
		t := now().UnixNano()
		mu.Lock()
		defer mu.Unlock()
		last = max(last, t)
		return last
	}
}

// Handle processes one datagram that arrived at arrival (the kernel's
// stamp, or the zero Time if there was none: then the device clock, Now)
// from from. While Run runs, signature checks the datagram makes due are
// left to Run's checker goroutine; otherwise Handle runs them itself
// before it returns.
func (r *Receiver) Handle(pkt []byte, arrival time.Time, from netip.AddrPort) {
	// Sources, and the addresses the early queue trusts, are kept
	// unmapped and without a zone, as the kernel filter compares them.
	from = netip.AddrPortFrom(from.Addr().Unmap().WithZone(""), from.Port())
	if r.sources != nil && !r.sources[from.Addr()] {
		r.drops.add(reasonForeignSource)
		return
	}
	h, err := wire.Peek(pkt)
	if err != nil {
		r.drops.add(reasonMalformed)
		return
	}
	switch h.Type {
	case wire.TypeAnnounce:
		if r.handleShard(pkt, from.Addr()) {
			r.checksDue()
		}
	case wire.TypeRelease:
		kernel := !arrival.IsZero()
		if !kernel {
			arrival = r.cfg.Now()
		}
		r.handleRelease(pkt, stamp{r.cfg.TAIOffset.FromTime(arrival), kernel}, from)
	default:
		r.drops.add(reasonUnexpected)
		return
	}
	r.deliver()
}

// deliver hands the events built so far to OnEvent.
func (r *Receiver) deliver() {
	r.mu.Lock()
	events := r.released
	r.released = nil
	r.mu.Unlock()
	for _, ev := range events {
		r.cfg.OnEvent(ev)
	}
}

// handleShard takes one ANNOUNCE datagram from src and reports whether a
// signature check became due.
func (r *Receiver) handleShard(pkt []byte, src netip.Addr) bool {
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	if err := r.shard.Decode(pkt); err != nil {
		r.drops.add(reasonMalformed)
		return false
	}
	if !r.streams[r.shard.Stream] {
		r.drops.add(reasonUnsubscribed)
		return false
	}
	return r.onShard(&r.shard, src)
}

// checksDue wakes Run's checker, or without Run runs the checks here.
func (r *Receiver) checksDue() {
	if wake := r.checker.Load(); wake != nil {
		select {
		case *wake <- struct{}{}:
		default: // already woken
		}
		return
	}
	r.runChecks()
}

// runChecks runs the signature checks due until none is left, holding
// neither shardMu nor mu while it verifies: each round, the rebuilt bodies
// first (at most one a period, each of a verified root, so a flood of
// forged roots cannot hold them back), then one deferred root.
func (r *Receiver) runChecks() {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	for {
		r.shardMu.Lock()
		bodies := r.rebuilt
		r.rebuilt = nil
		c, ok := r.asm.NextCheck()
		r.shardMu.Unlock()
		if !ok && len(bodies) == 0 {
			return
		}
		for _, b := range bodies {
			r.onBody(b.k, b.body)
		}
		if ok {
			r.checked(c, r.verify(c))
		}
		r.deliver()
	}
}

// checked takes a shard-root check's result to the assembler.
func (r *Receiver) checked(c fec.Check, verr error) {
	k := key{c.Stream(), c.Period()}
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	body, unstored, err := r.asm.Checked(c, verr)
	why := reasonDuplicate // copies past the k held while the check ran: not needed
	if err != nil {
		why = assemblyReason(err)
	}
	for range unstored {
		r.drops.add(why)
	}
	switch {
	case body != nil:
		r.rebuilt = append(r.rebuilt, rebuilt{k, body})
	case err == nil:
		r.learnHead(k)
	}
}

// stamp is when a datagram arrived (TAI ns), and whether the kernel said so.
type stamp struct {
	at     int64
	kernel bool
}

func (r *Receiver) handleRelease(pkt []byte, arrival stamp, from netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.release.Decode(pkt); err != nil {
		r.drops.add(reasonMalformed)
		return
	}
	if !r.streams[r.release.Stream] {
		r.drops.add(reasonUnsubscribed)
		return
	}
	r.onRelease(&r.release, arrival, from)
}
