package edge

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var (
	// ErrDuplicate: the period's bundle is already held or released.
	ErrDuplicate = errors.New("edge: duplicate bundle")
	// ErrConflict: a different bundle for the same period is already held
	// or released; the first one stands.
	ErrConflict = errors.New("edge: conflicting bundle")
	// ErrBusy: the edge holds Config.MaxPending unreleased bundles.
	ErrBusy = errors.New("edge: too many pending bundles")
	// ErrStale: the period is older than the released periods kept.
	ErrStale = errors.New("edge: stale bundle")
	// ErrConfig: the configuration cannot work.
	ErrConfig = errors.New("edge: invalid config")
	// ErrRunning: Run was called twice.
	ErrRunning = errors.New("edge: already running")
)

// Sender is one destination of the edge's datagrams, such as a multicast
// group on an interface or a unicast server's subscribers.
type Sender interface {
	// Send writes every datagram once, in order, and returns how many were
	// sent; a short count comes with the error that stopped it. typ says
	// what the batch holds: wire.TypeRelease (the RELEASE copies of the
	// periods due at one instant) or wire.TypeAnnounce (carousel rounds),
	// so that a sender can keep the two apart without parsing them. The
	// carousel and the release loop may call it concurrently.
	Send(typ wire.Type, datagrams [][]byte) (int, error)
}

// SenderFunc adapts a function to a Sender.
type SenderFunc func(typ wire.Type, datagrams [][]byte) (int, error)

// Send calls f.
func (f SenderFunc) Send(typ wire.Type, datagrams [][]byte) (int, error) { return f(typ, datagrams) }

// History is what an edge has released and still holds for release: what
// catch-up serves to a receiver that joins late. *Edge implements it.
type History interface {
	// Released returns the stream's released periods, oldest first.
	Released(stream uint32) []*Released
	// Announced returns the ANNOUNCE datagrams of the stream's periods
	// not yet released. It never includes a release secret.
	Announced(stream uint32) [][]byte
}

// CatchUpSender is a Sender that serves catch-up (a unicast server): New
// hands it the edge's History before the edge runs.
type CatchUpSender interface {
	Sender
	SetHistory(History)
}

// RunSender is a Sender with work of its own (a unicast server answers
// its subscribers): Edge.Run runs it beside the carousel and the release
// loop, and an error from it ends Run with that error.
type RunSender interface {
	Sender
	// Run serves until ctx ends (then it returns nil) or it fails.
	Run(ctx context.Context) error
}

// Defaults for Config.
//
// DefaultRounds and DefaultRepeat hold 10 % random datagram loss: a
// receiver that hears a single edge misses a period with probability
// 1.0·10⁻⁷ (≤ 10⁻⁶). With independent loss p, all Repeat copies of a RELEASE
// are lost with probability p^Repeat (0.1⁷ = 10⁻⁷; 6 copies would make it
// 10⁻⁶ before the ANNOUNCE adds its share). The ANNOUNCE is lost when fewer
// than k of its k+m shards arrive; each shard goes out once per round, so
// it is lost with q = p^Rounds. The worst default geometry is k = 4, m = 2 (m is
// max(2, ⌈k/2⌉)), lost with probability ≈ C(6,3)·q³ = 2·10⁻¹¹ at four
// rounds. Each further edge the receiver hears multiplies the exponents.
// Copies are not free — each goes to every unicast subscriber — so Repeat
// is the smallest that holds 10 % to 10⁻⁶ per receiver and period.
// faults/loss_test.go checks this arithmetic (TestLossBudget) and runs it
// over real sockets with injected loss (TestLoss).
const (
	DefaultLead     = 2 * time.Second
	DefaultRounds   = 4
	DefaultRepeat   = 7
	DefaultSpacing  = 2 * time.Millisecond
	DefaultKeep     = wire.MaxCatchUp
	DefaultPending  = 1024
	DefaultRetry    = 50 * time.Millisecond
	DefaultWakeHead = 20 * time.Millisecond
)

// Config configures an Edge. Clock, Trusted and at least one Sender are
// required; zero values of the rest take the defaults above.
type Config struct {
	ID    uint32    // the edge id stamped on RELEASEs
	Clock ptp.Clock // releases wait on its earliest possible time
	// ClockSource names where Clock's bound comes from ("chrony
	// /run/chrony/chronyd.sock", "system"), for every release's report
	// and log line; "" leaves it unnamed.
	ClockSource string
	Trusted     *seal.KeyRing // origin keys that bundles must be signed by
	Senders     []Sender

	Lead    time.Duration // the carousel starts this long before releaseAt
	Rounds  int           // carousel rounds, spread evenly over the lead
	Repeat  int           // copies of each RELEASE
	Spacing time.Duration // between RELEASE copies
	Keep    int           // released periods kept per stream for catch-up
	// MaxPending bounds the bundles held before their release.
	MaxPending int
	// Retry is how often a release held by an unsynchronized clock looks
	// at the clock again.
	Retry time.Duration
	// Waiter commit-waits for each release [ptp.Precise: sleep, then spin
	// on a locked OS thread]. Tests in virtual time pass ptp.Sleeper.
	Waiter ptp.Waiter
	// WakeHead is how long before a release the release loop, which
	// sleeps on the runtime's timers at normal priority, hands over to the
	// Waiter (default DefaultWakeHead). A Waiter that sleeps at real-time
	// priority (ptp.Precise with a Priority) is worth a longer head: on a
	// busy machine the loop's own wake-up can be tens of milliseconds
	// late, the Waiter's is not. A bundle due earlier that arrives during
	// the head waits for the release in progress.
	WakeHead time.Duration
	Logger   *slog.Logger
	// OnRelease, if set, is called after each release's copies are sent,
	// from the release goroutine: it must return quickly.
	OnRelease func(Report)
}

// Report describes one release as sent.
type Report struct {
	Edge      uint32 // Config.ID
	Stream    uint32
	Period    uint64
	ReleaseAt int64 // TAI ns
	// Lateness is the clock's earliest time when the wait ended − releaseAt
	// (≥ 0); only stamping the prepared datagrams and the sends follow.
	Lateness time.Duration
	Held     int // times the release was held by an unsynchronized clock
	Copies   int // copies sent to every sender without error
	// FanOut is how long the first copy took to hand to every sender: for
	// a unicast sender, the time to the last subscriber.
	FanOut time.Duration
	// Clock is the reading that ended the commit-wait: the release went
	// out because its Earliest had reached ReleaseAt. Its Uncertainty is
	// the bound the release rests on, its DataAge the age of the data
	// behind that bound (a daemon's last answer).
	Clock ptp.Reading
	// ClockSource names where the bound came from (Config.ClockSource).
	ClockSource string
}

// Stats are the edge's counters since New.
type Stats struct {
	BundlesAccepted uint64
	BundlesRefused  uint64
	Pending         int // bundles held, not yet released
	Rounds          uint64
	ShardsSent      uint64
	Released        uint64 // periods at least one sender took a RELEASE of
	// Past counts bundles whose releaseAt had passed before the edge held
	// them: kept for catch-up, never released live.
	Past uint64
	// ReleaseFailed counts periods due for release that no sender took a
	// single RELEASE copy of: nothing left, though catch-up serves them.
	ReleaseFailed uint64
	ReleaseCopies uint64 // RELEASE datagrams senders took, all senders
	// ReleaseUnsent and AnnounceUnsent count datagrams handed to a sender
	// that it did not take (its Send failed part way or at once).
	ReleaseUnsent, AnnounceUnsent uint64
	Holds                         uint64 // clock reads that held a due release
	SendErrors                    uint64 // Send calls that failed
	// FailingSenders is how many senders failed their last Send.
	FailingSenders int
	MaxLateness    time.Duration
	// MaxBound and MaxClockAge are the widest clock bound any release
	// rested on and the oldest data behind one (Report.Clock).
	MaxBound, MaxClockAge time.Duration
}

// Edge is a release engine. Its methods are safe for concurrent use.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	running atomic.Bool
	// releasing is set while a RELEASE's first copy goes out; the
	// carousel waits.
	releasing atomic.Bool
	// A bundle arrived: the release and carousel loops re-plan.
	wakeRelease, wakeCarousel chan struct{}

	mu       sync.Mutex
	pending  map[key]*entry
	inflight map[key]*bundle.Bundle // taken for release, not yet in history
	released map[uint32]*history

	stats struct {
		accepted, refused, rounds, shards, released, copies, holds, sendErrs atomic.Uint64
		releaseFailed, releaseUnsent, announceUnsent, past                   atomic.Uint64
		maxLate, maxBound, maxAge                                            atomic.Int64
	}
	// lastErr is each sender's last Send error, nil once it took a send.
	lastErr []atomic.Pointer[error]
}

type key struct {
	stream uint32
	period uint64
}

// entry is one held bundle and the state of its carousel and release.
type entry struct {
	b        *bundle.Bundle
	release  []byte // the RELEASE datagram, built at Add
	announce int64  // when the carousel starts (TAI ns)
	round    int    // carousel rounds sent
	held     int    // clock reads that held it
}

// New checks cfg and returns an idle Edge; Run starts it.
func New(cfg Config) (*Edge, error) {
	switch {
	case cfg.Clock == nil:
		return nil, fmt.Errorf("%w: no clock", ErrConfig)
	case cfg.Trusted == nil:
		return nil, fmt.Errorf("%w: no trusted origin keys", ErrConfig)
	case len(cfg.Senders) == 0:
		return nil, fmt.Errorf("%w: no senders", ErrConfig)
	case cfg.Lead < 0 || cfg.Rounds < 0 || cfg.Repeat < 0 || cfg.Spacing < 0 || cfg.Keep < 0 || cfg.MaxPending < 0 || cfg.Retry < 0 || cfg.WakeHead < 0:
		return nil, fmt.Errorf("%w: negative setting", ErrConfig)
	}
	cfg.Lead = cmp.Or(cfg.Lead, DefaultLead)
	cfg.Rounds = cmp.Or(cfg.Rounds, DefaultRounds)
	cfg.Repeat = cmp.Or(cfg.Repeat, DefaultRepeat)
	cfg.Spacing = cmp.Or(cfg.Spacing, DefaultSpacing)
	cfg.Keep = cmp.Or(cfg.Keep, DefaultKeep)
	cfg.MaxPending = cmp.Or(cfg.MaxPending, DefaultPending)
	cfg.Retry = cmp.Or(cfg.Retry, DefaultRetry)
	cfg.WakeHead = cmp.Or(cfg.WakeHead, DefaultWakeHead)
	if cfg.Waiter == nil {
		cfg.Waiter = ptp.Precise{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Edge{
		cfg:          cfg,
		log:          log.With("edge", cfg.ID),
		wakeRelease:  make(chan struct{}, 1),
		wakeCarousel: make(chan struct{}, 1),
		pending:      make(map[key]*entry),
		inflight:     make(map[key]*bundle.Bundle),
		released:     make(map[uint32]*history),
		lastErr:      make([]atomic.Pointer[error], len(cfg.Senders)),
	}
	// The one place an edge and its catch-up senders are wired together.
	for _, s := range cfg.Senders {
		if c, ok := s.(CatchUpSender); ok {
			c.SetHistory(e)
		}
	}
	return e, nil
}

// Add verifies b against the trusted origin keys (bundle.Open) and holds it
// for carousel and release. A bundle whose releaseAt had passed, by the
// clock's earliest time, before the edge held it is never sent as a live
// release — no receiver holds its ANNOUNCE from this edge, and a RELEASE
// seconds late tells the wire a lie about when it was released — but joins
// the catch-up history, ANNOUNCE and RELEASE, at once, and is counted
// (Stats.Past).
func (e *Edge) Add(b *bundle.Bundle) error {
	past, err := e.add(b)
	if err != nil {
		e.stats.refused.Add(1)
		return err
	}
	e.stats.accepted.Add(1)
	if past {
		e.stats.past.Add(1)
		e.log.Info("bundle arrived after its releaseAt: kept for catch-up, not released live", "stream", b.Stream, "period", b.Period)
		return nil
	}
	e.kick()
	return nil
}

func (e *Edge) add(b *bundle.Bundle) (past bool, err error) {
	if _, err := bundle.Open(b, e.cfg.Trusted); err != nil {
		return false, err
	}
	rel := wire.Release{
		Header:    wire.Header{Stream: b.Stream, Period: b.Period},
		RK:        b.RK,
		ReleaseAt: b.ReleaseAt,
		SentAt:    b.ReleaseAt,
		EdgeID:    e.cfg.ID,
	}
	dg := make([]byte, wire.ReleaseLen)
	if _, err := rel.Encode(dg); err != nil {
		return false, err
	}
	now, err := e.cfg.Clock.Now()
	past = err == nil && now.State != ptp.StateUnsynchronized && now.Earliest > b.ReleaseAt
	announceAt := e.announceAt(b.ReleaseAt)
	k := key{b.Stream, b.Period}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.find(k); old != nil {
		if sameBundle(old, b) {
			return false, ErrDuplicate
		}
		return false, ErrConflict
	}
	if h := e.released[b.Stream]; h != nil && h.full(e.cfg.Keep) && b.Period < h.oldest() {
		return false, ErrStale
	}
	if past {
		_ = wire.SetSentAt(dg, now.Earliest) // cannot fail: a RELEASE built above
		e.recordLocked(b, dg)
		return true, nil
	}
	if len(e.pending) >= e.cfg.MaxPending {
		return false, ErrBusy
	}
	e.pending[k] = &entry{b: b, release: dg, announce: announceAt}
	return false, nil
}

// find returns the bundle held or released for k. e.mu is held.
func (e *Edge) find(k key) *bundle.Bundle {
	if p := e.pending[k]; p != nil {
		return p.b
	}
	if b := e.inflight[k]; b != nil {
		return b
	}
	if h := e.released[k.stream]; h != nil {
		if r := h.get(k.period); r != nil {
			return r.Bundle
		}
	}
	return nil
}

func sameBundle(a, b *bundle.Bundle) bool {
	return a.RK == b.RK && a.ReleaseAt == b.ReleaseAt && a.PresentAt == b.PresentAt && slices.EqualFunc(a.Shards, b.Shards, bytes.Equal)
}

func (e *Edge) kick() {
	for _, c := range []chan struct{}{e.wakeRelease, e.wakeCarousel} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Stats returns a snapshot of the counters.
func (e *Edge) Stats() Stats {
	e.mu.Lock()
	pending := len(e.pending)
	e.mu.Unlock()
	return Stats{
		BundlesAccepted: e.stats.accepted.Load(),
		BundlesRefused:  e.stats.refused.Load(),
		Pending:         pending,
		Rounds:          e.stats.rounds.Load(),
		ShardsSent:      e.stats.shards.Load(),
		Released:        e.stats.released.Load(),
		ReleaseFailed:   e.stats.releaseFailed.Load(),
		Past:            e.stats.past.Load(),
		ReleaseCopies:   e.stats.copies.Load(),
		ReleaseUnsent:   e.stats.releaseUnsent.Load(),
		AnnounceUnsent:  e.stats.announceUnsent.Load(),
		Holds:           e.stats.holds.Load(),
		SendErrors:      e.stats.sendErrs.Load(),
		FailingSenders:  len(e.SenderErrors()),
		MaxLateness:     time.Duration(e.stats.maxLate.Load()),
		MaxBound:        time.Duration(e.stats.maxBound.Load()),
		MaxClockAge:     time.Duration(e.stats.maxAge.Load()),
	}
}

// Ahead returns how many periods of stream the edge holds and has not yet
// released: how far ahead its bundles reach.
func (e *Edge) Ahead(stream uint32) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k := range e.pending {
		if k.stream == stream {
			n++
		}
	}
	for k := range e.inflight {
		if k.stream == stream {
			n++
		}
	}
	return n
}

// SenderErrors returns, by sender index, the error of each sender whose
// last Send failed; a sender that took its last send is absent.
func (e *Edge) SenderErrors() map[int]error {
	errs := make(map[int]error)
	for i := range e.lastErr {
		if p := e.lastErr[i].Load(); p != nil {
			errs[i] = *p
		}
	}
	return errs
}

// send hands dgs to sender i and returns how many it took, never fewer
// than 0 or more than len(dgs) whatever the sender says, counting what it
// did not take as unsent.
func (e *Edge) send(i int, typ wire.Type, dgs [][]byte, unsent *atomic.Uint64) (int, error) {
	n, err := e.cfg.Senders[i].Send(typ, dgs)
	n = min(max(n, 0), len(dgs))
	if err == nil && n < len(dgs) {
		err = fmt.Errorf("took %d of %d datagrams without an error", n, len(dgs))
	}
	unsent.Add(uint64(len(dgs) - n))
	if err != nil {
		e.stats.sendErrs.Add(1)
		e.lastErr[i].Store(&err)
	} else {
		e.lastErr[i].Store(nil)
	}
	return n, err
}
