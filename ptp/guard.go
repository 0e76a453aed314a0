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
// A synchronized clock's interval [Earliest, Latest] must always overlap
// what the oscillator predicts from an earlier reading (an anchor): that
// reading's interval advanced by the oscillator's elapsed time, widened by
// ppm of it. Anchors are taken every window/4, four are kept, and so the
// oldest is at most one window old while the clock is read at least that
// often (an edge reads it many times a second). Every Reading the guard returns is the union of the clock's
// interval and the oldest anchor's prediction, so a lie that began after
// that anchor cannot move Earliest past the truth before it is caught.
//
// When the clock's interval leaves an anchor's prediction, the clock has
// stepped or drifted beyond its bound. The guard then holds over on the
// oscillator: it freezes the oldest anchor (taken before the fault, if the
// fault was caught within one window), reports StateHoldover with the size
// of the jump, and releases by the union of the two, so a clock that jumped
// ahead releases by the oscillator and one that fell behind releases late.
// After the holdover (DefaultGuardHoldover) it reports StateUnsynchronized.
// The fault clears when the clock is back where the frozen anchor says, as
// closely as when it was caught (so a step undone clears it), or
// when the clock itself reports StateUnsynchronized (its servo has let go:
// the guard forgets everything and trusts it afresh once it resynchronizes).
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

type anchor struct {
	osc              int64
	earliest, latest int64
}

type guardFault struct {
	hold  anchor // the frozen anchor the guard holds over on
	since int64  // oscillator time the fault was caught
	slack int64  // the prediction's widening when it was caught, ns
	by    int64  // how far the clock's midpoint left the prediction, ns
	gone  bool   // holdover has run out
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

// predict is what a says true time is at oscillator time now.
func (g *Guard) predict(a anchor, now int64) (lo, hi int64) {
	d := now - a.osc
	return a.earliest + d - g.slack(d), a.latest + d + g.slack(d)
}

// slack is how far the oscillator may have drifted in d.
func (g *Guard) slack(d int64) int64 { return int64(math.Ceil(float64(max(d, 0)) * g.cfg.ppm / 1e6)) }

// Now reads the clock and checks it.
func (g *Guard) Now() (Reading, error) {
	if g.cfg.err != nil {
		return Reading{Reason: g.cfg.err.Error()}, fmt.Errorf("ptp: guard: %w", g.cfg.err)
	}
	r, err := g.clock.Now()
	if err != nil {
		return r, err
	}
	now := g.cfg.osc()
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.State == StateUnsynchronized {
		if g.fault != nil {
			g.cfg.log.Warn("clock guard: clock lost sync; forgetting the fault and its anchors", "reason", r.Reason)
		}
		g.anchors, g.fault = nil, nil
		return r, nil
	}
	if g.fault != nil {
		return g.holding(r, now), nil
	}
	for _, a := range g.anchors {
		lo, hi := g.predict(a, now)
		if r.Latest < lo || r.Earliest > hi {
			g.catch(r, now, lo, hi)
			return g.holding(r, now), nil
		}
	}
	if n := len(g.anchors); n == 0 || now-g.anchors[n-1].osc >= g.every {
		g.anchors = append(g.anchors, anchor{osc: now, earliest: r.Earliest, latest: r.Latest})
		if len(g.anchors) > guardAnchors {
			g.anchors = g.anchors[1:]
		}
	}
	lo, hi := g.predict(g.anchors[0], now)
	r.Earliest, r.Latest = min(r.Earliest, lo), max(r.Latest, hi)
	return r, nil
}

// catch records that r left the prediction [lo, hi] and freezes the oldest
// anchor.
func (g *Guard) catch(r Reading, now, lo, hi int64) {
	by := r.Mid() - (lo + (hi-lo)/2)
	hold := g.anchors[0]
	g.fault = &guardFault{hold: hold, since: now, slack: g.slack(now - hold.osc), by: by}
	g.cfg.log.Error("clock guard: clock moved against the local oscillator beyond its stated bound; holding over on the oscillator",
		"by", time.Duration(by), "uncertainty", r.Uncertainty(), "holdover", g.cfg.holdover)
}

// holding is the Reading while a fault stands: the union of the clock's
// interval and the frozen anchor's prediction, in holdover until it runs
// out. A clock that is back where the anchor says, as closely as when it
// was caught, clears the fault: the prediction's widening since then must
// not let a clock that stayed wrong creep back in.
func (g *Guard) holding(r Reading, now int64) Reading {
	f := g.fault
	lo, hi := g.predict(f.hold, now)
	d := now - f.hold.osc
	if r.Latest >= f.hold.earliest+d-f.slack && r.Earliest <= f.hold.latest+d+f.slack {
		g.cfg.log.Info("clock guard: clock agrees with the local oscillator again", "after", time.Duration(now-f.since))
		g.fault = nil
		g.anchors = []anchor{f.hold}
		r.Earliest, r.Latest = min(r.Earliest, lo), max(r.Latest, hi)
		return r
	}
	out := Reading{Earliest: min(r.Earliest, lo), Latest: max(r.Latest, hi)}
	age := time.Duration(now - f.since)
	if age > g.cfg.holdover {
		if !f.gone {
			f.gone = true
			g.cfg.log.Error("clock guard: holdover on the local oscillator ran out; refusing releases", "after", age)
		}
		out.State = StateUnsynchronized
		out.Reason = fmt.Sprintf("clock guard: clock moved %v against the local oscillator, beyond its ±%v bound, %v ago; holdover ran out", time.Duration(f.by), r.Uncertainty(), age.Round(time.Millisecond))
		return out
	}
	out.State = StateHoldover
	out.Reason = fmt.Sprintf("clock guard: clock moved %v against the local oscillator, beyond its ±%v bound, %v ago; holding over on the oscillator", time.Duration(f.by), r.Uncertainty(), age.Round(time.Millisecond))
	return out
}
