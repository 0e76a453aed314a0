package edge

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// Run carousels and releases, and runs every RunSender, until ctx ends
// (then it returns ctx's error) or a sender fails (then it stops the rest
// and returns that sender's error). It may be called once.
func (e *Edge) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range e.cfg.Senders {
		if r, ok := s.(RunSender); ok {
			g.Go(func() error {
				if err := r.Run(gctx); err != nil {
					return fmt.Errorf("edge: sender %d: %w", i, err)
				}
				if ctx.Err() == nil {
					return fmt.Errorf("edge: sender %d stopped", i)
				}
				return nil
			})
		}
	}
	g.Go(func() error { e.carousel(gctx); return nil })
	g.Go(func() error { e.releaseLoop(gctx); return nil })
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// announceAt is when the carousel of a period released at releaseAt
// starts: Lead before it, or now if the bundle arrived later than that.
func (e *Edge) announceAt(releaseAt int64) int64 {
	at := releaseAt - int64(e.cfg.Lead)
	if r, err := e.cfg.Clock.Now(); err == nil {
		at = max(at, r.Mid())
	}
	return at
}

// releaseLoop sleeps until the earliest pending releaseAt is near, then
// commit-waits on the clock and sends every release that is due.
func (e *Edge) releaseLoop(ctx context.Context) {
	rt, _ := e.cfg.Waiter.(realtimeRunner)
	for ctx.Err() == nil {
		at, ok := e.nextRelease()
		if !ok {
			e.idle(ctx, e.wakeRelease, time.Hour)
			continue
		}
		// Sleep coarsely while far from the instant, so that a new bundle
		// with an earlier releaseAt is noticed.
		synced := false
		if r, err := e.cfg.Clock.Now(); err == nil && r.State != ptp.StateUnsynchronized {
			if far := time.Duration(at-r.Earliest) - e.cfg.WakeHead; far > 0 {
				e.idle(ctx, e.wakeRelease, min(far, time.Second))
				continue
			}
			synced = true
		}
		var due []*entry
		var dgs [][]byte
		var first *firstCopy
		var err error
		approach := func() {
			// On the real-time thread, the rest of a long head is slept
			// there too, precisely, before the periods are taken.
			if synced && e.cfg.WakeHead > DefaultWakeHead {
				_, _ = e.cfg.Waiter.WaitUntil(ctx, e.cfg.Clock, at-int64(DefaultWakeHead)) // a failure shows again below
			}
			due, dgs, first, err = e.releaseDue(ctx, at, synced)
		}
		if rt == nil || !synced || !rt.Realtime(approach) {
			approach()
		}
		if first == nil {
			e.putBack(due)
			if ctx.Err() != nil {
				return
			}
			e.hold(at, err)
			e.idle(ctx, nil, e.cfg.Retry)
			continue
		}
		e.releaseRest(ctx, due, dgs, first)
	}
}

// realtimeRunner is a Waiter that can run a whole release, from taking the
// due periods to the first send, on one thread at real-time priority
// (ptp.Precise with a Priority): the release loop's own timers fire at
// normal priority, tens of milliseconds late on a busy machine.
type realtimeRunner interface {
	Realtime(f func()) bool
}

// releaseDue takes the periods due at at, lays out their RELEASEs, waits
// for the instant and sends the first copy. first is nil if the wait
// failed (err says why) or ctx ended; the caller then puts due back.
func (e *Edge) releaseDue(ctx context.Context, at int64, synced bool) (due []*entry, dgs [][]byte, first *firstCopy, err error) {
	// Take the periods due at the instant and lay out their datagrams
	// before the final wait: after it, only the stamp and the sends.
	// Rounds the carousel never sent go out now, but only on a clock
	// that says the instant is near: on one that cannot say, the wait
	// below fails, the periods go back, and the carousel spreads their
	// rounds as usual.
	due = e.takeDue(at)
	if synced {
		e.announceUnsent(due)
	}
	dgs = make([][]byte, len(due))
	for i, p := range due {
		dgs[i] = p.release
	}
	// The first copy goes out on the thread that waited, while it may
	// still be at real-time priority (ptp.ThenWaiter), and its report
	// carries the reading that ended the wait.
	rec := &lastReading{Clock: e.cfg.Clock}
	send := func(late time.Duration) { first = e.releaseFirst(due, dgs, at+int64(late), rec.r) }
	if tw, ok := e.cfg.Waiter.(ptp.ThenWaiter); ok {
		_, err = tw.WaitUntilThen(ctx, rec, at, send)
	} else if late, werr := e.cfg.Waiter.WaitUntil(ctx, rec, at); werr != nil {
		err = werr
	} else if ctx.Err() == nil {
		send(late)
	}
	return due, dgs, first, err
}

// lastReading is a clock that remembers its last successful reading: a
// Waiter's wait ends on a reading whose Earliest has reached the instant,
// so after it (or in ThenWaiter's callback) r is that reading. Waiters
// read on the waiting goroutine only, which is also the one that reads r.
type lastReading struct {
	ptp.Clock
	r ptp.Reading
}

func (l *lastReading) Now() (ptp.Reading, error) {
	r, err := l.Clock.Now()
	if err == nil {
		l.r = r
	}
	return r, err
}

// putBack returns periods taken for a release that did not happen.
func (e *Edge) putBack(due []*entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range due {
		k := key{p.b.Stream, p.b.Period}
		delete(e.inflight, k)
		e.pending[k] = p
	}
}

// idle waits for d, ctx's end or a wake-up on c (nil: none).
func (e *Edge) idle(ctx context.Context, c <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-c:
	case <-t.C:
	}
}

func (e *Edge) nextRelease() (int64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var at int64
	found := false
	for _, p := range e.pending {
		if !found || p.b.ReleaseAt < at {
			at, found = p.b.ReleaseAt, true
		}
	}
	return at, found
}

// hold records that the releases due at or before at wait for the clock.
func (e *Edge) hold(at int64, why error) {
	e.stats.holds.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pending {
		if p.b.ReleaseAt > at {
			continue
		}
		p.held++
		// Loud but bounded: the first hold, then about once a minute.
		if p.held == 1 || p.held%int(time.Minute/e.cfg.Retry+1) == 0 {
			e.log.Warn("holding release: clock cannot prove releaseAt has passed",
				"stream", p.b.Stream, "period", p.b.Period, "holds", p.held, "reason", why)
		}
	}
}

// takeDue removes and returns the pending periods whose releaseAt is at or
// before at, in release order. They are sent only once the clock's
// earliest possible time has reached at.
func (e *Edge) takeDue(at int64) []*entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	var due []*entry
	for k, p := range e.pending {
		if p.b.ReleaseAt <= at {
			due = append(due, p)
			delete(e.pending, k)
			e.inflight[k] = p.b
		}
	}
	slices.SortFunc(due, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.b.ReleaseAt, b.b.ReleaseAt), cmp.Compare(a.b.Stream, b.b.Stream), cmp.Compare(a.b.Period, b.b.Period))
	})
	return due
}

// firstCopy is what the first copy of a release did.
type firstCopy struct {
	earliest int64       // the clock's earliest time at the instant
	reading  ptp.Reading // the reading that ended the wait
	taken    []bool      // datagrams at least one sender took, by index
	copies   int         // copies every sender took whole
	fanOut   time.Duration
}

// releaseFirst sends the first copy of the due periods' RELEASEs (dgs) to
// every sender and publishes the periods for catch-up as soon as it has
// gone. earliest is the clock's earliest possible time, already at or past
// every releaseAt, by reading.
func (e *Edge) releaseFirst(due []*entry, dgs [][]byte, earliest int64, reading ptp.Reading) *firstCopy {
	f := &firstCopy{earliest: earliest, reading: reading, taken: make([]bool, len(dgs))}
	if len(due) == 0 {
		return f
	}
	// The first copy is the instant: the carousel holds back for it alone,
	// and the periods count as released (served by catch-up) as soon as it
	// has gone. The later copies are redundancy; holding every ANNOUNCE
	// round behind all of them (a long time to many unicast subscribers, or
	// on a starved CPU) could starve the next period of its rounds.
	e.releasing.Store(true)
	stamp(dgs, earliest)
	t0 := time.Now()
	if e.sendAll(dgs, f.taken) {
		f.copies++
	}
	f.fanOut = time.Since(t0)
	first := make([][]byte, len(dgs))
	for i, d := range dgs {
		first[i] = slices.Clone(d)
	}
	e.record(due, first)
	e.releasing.Store(false)
	return f
}

// releaseRest sends the remaining Repeat−1 copies after the first, and
// reports the periods after the last.
func (e *Edge) releaseRest(ctx context.Context, due []*entry, dgs [][]byte, f *firstCopy) {
	if len(due) == 0 {
		return
	}
	earliest, copies, taken := f.earliest, f.copies, f.taken
	for range e.cfg.Repeat - 1 {
		e.idle(ctx, nil, e.cfg.Spacing)
		if ctx.Err() != nil {
			break
		}
		if r, err := e.cfg.Clock.Now(); err == nil {
			stamp(dgs, max(r.Earliest, earliest))
		}
		if e.sendAll(dgs, taken) {
			copies++
		}
	}
	e.report(due, taken, copies, f)
}

func stamp(dgs [][]byte, at int64) {
	for _, d := range dgs {
		// Cannot fail: every datagram is a RELEASE built by add.
		_ = wire.SetSentAt(d, at)
	}
}

// sendAll sends dgs to every sender, marks in taken the datagrams at least
// one sender took, and reports whether all took them all. A sender takes a
// prefix of its batch (Sender's contract).
func (e *Edge) sendAll(dgs [][]byte, taken []bool) bool {
	ok := true
	for i := range e.cfg.Senders {
		n, err := e.send(i, wire.TypeRelease, dgs, &e.stats.releaseUnsent)
		e.stats.copies.Add(uint64(n))
		for j := range n {
			taken[j] = true
		}
		if err != nil {
			ok = false
			e.log.Error("send release", "sender", i, "sent", n, "of", len(dgs), "err", err)
		}
	}
	return ok
}

// record moves the released periods from in flight to the history that
// catch-up serves.
func (e *Edge) record(due []*entry, first [][]byte) {
	e.mu.Lock()
	for i, p := range due {
		e.recordLocked(p.b, first[i])
		delete(e.inflight, key{p.b.Stream, p.b.Period})
	}
	e.mu.Unlock()
}

// recordLocked adds b, with its RELEASE datagram as first sent (or stamped),
// to the history that catch-up serves. e.mu is held.
func (e *Edge) recordLocked(b *bundle.Bundle, release []byte) {
	h := e.released[b.Stream]
	if h == nil {
		h = &history{}
		e.released[b.Stream] = h
	}
	catchUp := slices.Clone(release)
	_ = wire.AddFlags(catchUp, wire.FlagCatchUp) // cannot fail: add built it
	h.add(&Released{Bundle: b, Release: release, CatchUp: catchUp}, e.cfg.Keep)
}

// report counts, logs and reports the releases once their copies are sent.
// A period no sender took a single copy of is not released: it is counted
// apart and logged as an error (catch-up still serves it).
func (e *Edge) report(due []*entry, taken []bool, copies int, f *firstCopy) {
	for i, p := range due {
		late := time.Duration(f.earliest - p.b.ReleaseAt)
		if !taken[i] {
			e.stats.releaseFailed.Add(1)
			e.log.Error("release did not leave: no sender took a single copy; only catch-up serves it",
				"stream", p.b.Stream, "period", p.b.Period, "copies tried", e.cfg.Repeat)
			continue
		}
		e.stats.released.Add(1)
		storeMax(&e.stats.maxLate, int64(late))
		storeMax(&e.stats.maxBound, int64(f.reading.Uncertainty()))
		storeMax(&e.stats.maxAge, int64(f.reading.DataAge))
		level := slog.LevelInfo
		if p.held > 0 || copies < e.cfg.Repeat {
			level = slog.LevelWarn
		}
		e.log.Log(context.Background(), level, "released",
			"stream", p.b.Stream, "period", p.b.Period, "lateness", late, "held", p.held, "copies", copies,
			"clock", e.cfg.ClockSource, "bound", f.reading.Uncertainty(), "data_age", f.reading.DataAge)
		if e.cfg.OnRelease != nil {
			e.cfg.OnRelease(Report{Edge: e.cfg.ID, Stream: p.b.Stream, Period: p.b.Period, ReleaseAt: p.b.ReleaseAt, Lateness: late, Held: p.held, Copies: copies,
				FanOut: f.fanOut, Clock: f.reading, ClockSource: e.cfg.ClockSource})
		}
	}
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		m := a.Load()
		if v <= m || a.CompareAndSwap(m, v) {
			return
		}
	}
}
