package ptp

import (
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Defaults for NewGuard.
const (
	// DefaultOscillatorPPM bounds how fast a synchronized clock may run
	// against the local oscillator: two ordinary crystals (the host's and
	// the NIC's) disagree by up to about this much.
	DefaultOscillatorPPM = 100.0
	// DefaultGuardWindow is how far back the guard's oldest anchor reaches.
	// The guard's bound is at most DefaultOscillatorPPM × window wider than
	// the clock's own (200 µs), which is what it costs in lateness.
	DefaultGuardWindow = 2 * time.Second
	// DefaultGuardHoldover is how long the guard releases on the
	// oscillator alone after catching its clock out, before it refuses.
	DefaultGuardHoldover = 60 * time.Second
	guardAnchors         = 4
)

type guardConfig struct {
	osc      func() int64
	ppm      float64
	window   time.Duration
	holdover time.Duration
	log      *slog.Logger
	optionErr
}

// GuardOption configures NewGuard.
type GuardOption func(*guardConfig)

// WithOscillator sets the local oscillator the guard measures elapsed time
// with, in nanoseconds, and the most it may run fast or slow against true
// time in ppm. The default is CLOCK_MONOTONIC_RAW (steered by no time
// daemon) at DefaultOscillatorPPM; tests pass their own.
func WithOscillator(now func() int64, ppm float64) GuardOption {
	return func(c *guardConfig) {
		if now == nil || !(ppm >= 0 && ppm < 1e6) {
			c.invalid("oscillator %v ppm", ppm)
			return
		}
		c.osc, c.ppm = now, ppm
	}
}

// WithGuardWindow sets how far back the oldest anchor reaches (default
// DefaultGuardWindow). A longer window catches slower drifts and costs
// ppm × window of lateness.
func WithGuardWindow(d time.Duration) GuardOption {
	return func(c *guardConfig) {
		if d <= 0 {
			c.invalid("guard window %v", d)
		}
		c.window = d
	}
}

// WithGuardHoldover sets how long the guard trusts the oscillator alone
// after catching its clock out (default DefaultGuardHoldover).
func WithGuardHoldover(d time.Duration) GuardOption {
	return func(c *guardConfig) {
		c.nonNegative("guard holdover", d)
		c.holdover = d
	}
}

// WithGuardLogger logs the guard's verdicts (a clock caught out, cleared,
// given up on) to log.
func WithGuardLogger(log *slog.Logger) GuardOption {
	return func(c *guardConfig) {
		if log != nil {
			c.log = log
		}
	}
}

// Guard is a Clock that checks another clock against the local oscillator,
// so that a clock which steps, or drifts faster than its stated bound
// allows, cannot make a release early.
//
// Every read is bracketed: oscillator, clock, oscillator. The clock was
// read somewhere between the two oscillator reads, so the guard widens
// every comparison by the bracket's width and can never mistake a thread
// pre-empted between two reads for a clock that moved. A bracket wider
// than guardBracket is read again (up to guardTries reads, keeping the
// narrowest); one that stays wide is still checked, soundly and loosely,
// but never becomes an anchor.
//
// A synchronized clock's interval [Earliest, Latest] must always overlap
// what the oscillator predicts from an earlier reading (an anchor): that
// reading's interval advanced by the oscillator's elapsed time, widened by
// ppm of it and by both brackets. Anchors are taken every window/4, four
// are kept, and so the oldest is at most one window old while the clock is
// read at least that often (an edge reads it many times a second). Every
// Reading the guard returns is the union of the clock's interval and the
// oldest anchor's prediction, so a lie that began after that anchor cannot
// move Earliest past the truth before it is caught.
//
// When the clock's interval leaves an anchor's prediction on two reads in
// a row, the clock has stepped or drifted beyond its bound. The guard then
// holds over on the oscillator: it freezes the oldest anchor (taken before
// the fault, if the fault was caught within one window), reports
// StateHoldover with the size of the jump, and releases by the union of the
// two, so a clock that jumped ahead releases by the oscillator and one
// that fell behind releases late. After the holdover
// (DefaultGuardHoldover) it reports StateUnsynchronized. The fault clears
// when the clock is back where the frozen anchor says, as closely as when
// it was caught (so a step undone clears it); when the clock itself
// reports StateUnsynchronized (its servo has let go: the guard forgets
// everything and trusts it afresh once it resynchronizes); or, when the
// holdover runs out, if the clock fell behind the anchor and has kept time
// with the oscillator for at least a window since: either the anchor was
// wrong (taken while the clock was ahead, since corrected) or the clock is
// late, and releasing on a late clock is late, never early. A clock that
// moved ahead is refused after the holdover: only a second reference could
// tell a wrong anchor from a clock that would release early.
//
// What it cannot catch: a drift slow enough that the clock never leaves a
// prediction within one window, that is slower than about ppm plus
// (the two intervals' widths) ÷ window. Only an independent reference
// (a second time source) could; the guard has none.
type Guard struct {
	clock Clock
	cfg   guardConfig
	every int64 // anchor spacing, ns

	mu      sync.Mutex
	anchors []anchor // oldest first; at most guardAnchors
	fault   *guardFault
}

const (
	// guardBracket is the widest oscillator bracket around a clock read
	// that may become an anchor. A read costs a few hundred nanoseconds;
	// a wider bracket means the thread was pre-empted.
	guardBracket = int64(25 * time.Microsecond)
	// guardTries is how many times a wide bracket is read again.
	guardTries = 3
)

// sample is one bracketed read: the clock's reading taken at some
// oscillator time in [lo, hi].
type sample struct {
	r      Reading
	lo, hi int64
}

type anchor struct {
	lo, hi           int64 // oscillator bracket
	earliest, latest int64
}

type guardFault struct {
	hold  anchor // the frozen anchor the guard holds over on
	since int64  // oscillator time the fault was caught
	slack int64  // the prediction's widening when it was caught, ns
	by    int64  // how far the clock's midpoint left the prediction, ns
	gone  bool   // holdover has run out
	// steady is the newest read since the catch that the clock kept time
	// with the oscillator from, for a clock that fell behind.
	steady *anchor
}

// NewGuard wraps c. An invalid option does not panic: every Now then
// returns an error wrapping ErrInvalidOption.
func NewGuard(c Clock, opts ...GuardOption) *Guard {
	cfg := guardConfig{osc: rawOscillator, ppm: DefaultOscillatorPPM, window: DefaultGuardWindow, holdover: DefaultGuardHoldover, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	if c == nil {
		cfg.invalid("nil clock")
	}
	return &Guard{clock: c, cfg: cfg, every: max(int64(cfg.window)/guardAnchors, 1)}
}

// predict is what a says true time was at some oscillator time in
// [lo, hi]: its interval advanced by the elapsed time, widened by both
// brackets and by the oscillator's drift.
func (g *Guard) predict(a anchor, lo, hi int64) (earliest, latest int64) {
	return a.earliest + (lo - a.hi) - g.slack(hi-a.lo), a.latest + (hi - a.lo) + g.slack(hi-a.lo)
}

// slack is how far the oscillator may have drifted in d.
func (g *Guard) slack(d int64) int64 { return int64(math.Ceil(float64(max(d, 0)) * g.cfg.ppm / 1e6)) }

// agrees reports whether s overlaps a's prediction.
func (g *Guard) agrees(a anchor, s sample) bool {
	lo, hi := g.predict(a, s.lo, s.hi)
	return s.r.Latest >= lo && s.r.Earliest <= hi
}

// read takes one bracketed read, again while the bracket is wide, and
// returns the narrowest.
func (g *Guard) read() (sample, error) {
	var best sample
	for i := range guardTries {
		lo := g.cfg.osc()
		r, err := g.clock.Now()
		hi := g.cfg.osc()
		if err != nil {
			return sample{r: r}, err
		}
		if i == 0 || hi-lo < best.hi-best.lo {
			best = sample{r: r, lo: lo, hi: hi}
		}
		if best.hi-best.lo <= guardBracket {
			break
		}
	}
	return best, nil
}

// Now reads the clock and checks it.
func (g *Guard) Now() (Reading, error) {
	if g.cfg.err != nil {
		return Reading{Reason: g.cfg.err.Error()}, fmt.Errorf("ptp: guard: %w", g.cfg.err)
	}
	s, err := g.read()
	if err != nil {
		return s.r, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.r.State == StateUnsynchronized {
		if g.fault != nil {
			g.cfg.log.Warn("clock guard: clock lost sync; forgetting the fault and its anchors", "reason", s.r.Reason)
		}
		g.anchors, g.fault = nil, nil
		return s.r, nil
	}
	if g.fault != nil {
		return g.holding(s), nil
	}
	if a, ok := g.disagrees(s); ok {
		// One read can be a glitch of the clock's own; a second, fresh
		// read must disagree too.
		again, err := g.read()
		if err != nil {
			return again.r, err
		}
		if again.r.State != StateUnsynchronized && !g.agrees(a, again) {
			g.catch(again, a)
			return g.holding(again), nil
		}
		s = again
		if _, ok := g.disagrees(s); ok {
			return g.union(s, g.anchors[0]), nil
		}
	}
	if n := len(g.anchors); s.hi-s.lo <= guardBracket && (n == 0 || s.lo-g.anchors[n-1].lo >= g.every) {
		g.anchors = append(g.anchors, anchor{lo: s.lo, hi: s.hi, earliest: s.r.Earliest, latest: s.r.Latest})
		if len(g.anchors) > guardAnchors {
			g.anchors = g.anchors[1:]
		}
	}
	if len(g.anchors) == 0 {
		// Every read so far was pre-empted: nothing to check against yet.
		return s.r, nil
	}
	return g.union(s, g.anchors[0]), nil
}

// disagrees returns the first anchor s leaves the prediction of.
func (g *Guard) disagrees(s sample) (anchor, bool) {
	for _, a := range g.anchors {
		if !g.agrees(a, s) {
			return a, true
		}
	}
	return anchor{}, false
}

// union widens s's reading by a's prediction for the end of its bracket,
// the moment the caller acts on it.
func (g *Guard) union(s sample, a anchor) Reading {
	lo, hi := g.predict(a, s.hi, s.hi)
	r := s.r
	r.Earliest, r.Latest = min(r.Earliest, lo), max(r.Latest, hi)
	return r
}

// catch records that s left the prediction of a and freezes the oldest
// anchor.
func (g *Guard) catch(s sample, a anchor) {
	lo, hi := g.predict(a, s.lo, s.hi)
	by := s.r.Mid() - (lo + (hi-lo)/2)
	hold := g.anchors[0]
	g.fault = &guardFault{hold: hold, since: s.hi, slack: g.slack(s.hi - hold.lo), by: by}
	g.cfg.log.Error("clock guard: clock moved against the local oscillator beyond its stated bound; holding over on the oscillator",
		"by", time.Duration(by), "uncertainty", s.r.Uncertainty(), "bracket", time.Duration(s.hi-s.lo), "holdover", g.cfg.holdover)
}

// holding is the Reading while a fault stands: the union of the clock's
// interval and the frozen anchor's prediction, in holdover until it runs
// out. A clock that is back where the anchor says, as closely as when it
// was caught, clears the fault: the prediction's widening since then must
// not let a clock that stayed wrong creep back in.
func (g *Guard) holding(s sample) Reading {
	f := g.fault
	r := s.r
	if r.Latest >= f.hold.earliest+(s.lo-f.hold.hi)-f.slack && r.Earliest <= f.hold.latest+(s.hi-f.hold.lo)+f.slack {
		g.cfg.log.Info("clock guard: clock agrees with the local oscillator again", "after", time.Duration(s.hi-f.since))
		g.fault = nil
		g.anchors = []anchor{f.hold}
		return g.union(s, f.hold)
	}
	steady := g.behindAndSteady(s)
	age := time.Duration(s.hi - f.since)
	if age > g.cfg.holdover && steady {
		g.cfg.log.Warn("clock guard: holdover ran out on a clock that stayed behind the frozen anchor and kept time with the local oscillator; trusting it again, since it can only make releases late",
			"by", time.Duration(f.by), "after", age)
		g.fault = nil
		g.anchors = []anchor{*f.steady}
		return g.union(s, *f.steady)
	}
	out := g.union(s, f.hold)
	out.State, out.Reason = StateHoldover, ""
	if age > g.cfg.holdover {
		if !f.gone {
			f.gone = true
			g.cfg.log.Error("clock guard: holdover on the local oscillator ran out; refusing releases", "after", age)
		}
		out.State = StateUnsynchronized
		out.Reason = fmt.Sprintf("clock guard: clock moved %v against the local oscillator, beyond its ±%v bound, %v ago; holdover ran out", time.Duration(f.by), r.Uncertainty(), age.Round(time.Millisecond))
		return out
	}
	out.Reason = fmt.Sprintf("clock guard: clock moved %v against the local oscillator, beyond its ±%v bound, %v ago; holding over on the oscillator", time.Duration(f.by), r.Uncertainty(), age.Round(time.Millisecond))
	return out
}

// behindAndSteady reports whether a clock that fell behind the frozen
// anchor has kept time with the oscillator, within its bound, for at least
// a window. A read that does not keep time restarts the
// window from itself.
func (g *Guard) behindAndSteady(s sample) bool {
	f := g.fault
	if f.by >= 0 || s.hi-s.lo > guardBracket {
		return false
	}
	if f.steady == nil || !g.agrees(*f.steady, s) {
		f.steady = &anchor{lo: s.lo, hi: s.hi, earliest: s.r.Earliest, latest: s.r.Latest}
		return false
	}
	return s.lo-f.steady.hi >= int64(g.cfg.window)
}
