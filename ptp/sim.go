package ptp

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// SystemTAI is the default true-time source of a Sim: the system clock
// converted with DefaultTAIOffset. It is "true" only in the sense that all
// Sims sharing it agree, which is what multi-edge tests need.
func SystemTAI() int64 { return DefaultTAIOffset.FromTime(time.Now()) }

type simStep struct {
	at int64
	by time.Duration
}

type simEvent struct {
	at     int64
	state  State
	reason string
}

type simConfig struct {
	trueNow   func() int64
	offset    time.Duration
	driftPPM  float64
	steps     []simStep
	jitter    time.Duration
	seed      uint64
	base      time.Duration
	growthPPM float64
	events    []simEvent
	optionErr
}

// SimOption configures NewSim.
type SimOption func(*simConfig)

// WithTrueTime sets the source of true TAI time (default SystemTAI). Sims
// sharing one source model edges against one true clock.
func WithTrueTime(now func() int64) SimOption {
	return func(c *simConfig) {
		if now == nil {
			c.invalid("nil true-time source")
			return
		}
		c.trueNow = now
	}
}

// WithOffset makes the clock read d ahead of true time (negative: behind).
func WithOffset(d time.Duration) SimOption {
	return func(c *simConfig) { c.offset = d }
}

// WithDrift makes the clock gain ppm parts per million (negative: lose)
// relative to true time, counted from NewSim.
func WithDrift(ppm float64) SimOption {
	return func(c *simConfig) {
		if math.IsNaN(ppm) || math.Abs(ppm) > 1e6 {
			c.invalid("drift %v ppm", ppm)
		}
		c.driftPPM = ppm
	}
}

// WithStep makes the clock jump by by (negative: backward) when true time
// reaches at. Repeat it for several steps.
func WithStep(at int64, by time.Duration) SimOption {
	return func(c *simConfig) { c.steps = append(c.steps, simStep{at: at, by: by}) }
}

// WithJitter adds noise drawn uniformly from [−max, +max] to every read,
// from a PRNG seeded with seed so that runs repeat.
func WithJitter(max time.Duration, seed uint64) SimOption {
	return func(c *simConfig) {
		c.nonNegative("jitter", max)
		c.jitter, c.seed = max, seed
	}
}

// WithUncertainty sets the bound the clock states: base while synchronized,
// plus growthPPM of the time since sync was lost otherwise (holdover).
// The default is a zero bound. The Sim reports what it is told; tests pick
// faults inside or outside the bound to model sound or lying clocks.
func WithUncertainty(base time.Duration, growthPPM float64) SimOption {
	return func(c *simConfig) {
		if base < 0 || !(growthPPM >= 0 && growthPPM <= 1e6) {
			c.invalid("uncertainty %v + %v ppm", base, growthPPM)
		}
		c.base, c.growthPPM = base, growthPPM
	}
}

// WithStateAt changes the reported state to s, with reason, when true time
// reaches at. Before the first change the Sim is synchronized; use an at in
// the past to start in another state.
func WithStateAt(at int64, s State, reason string) SimOption {
	return func(c *simConfig) { c.events = append(c.events, simEvent{at: at, state: s, reason: reason}) }
}

// Sim is a deterministic simulated clock for tests of skew and clock faults.
// It reads true time from its source and reports it distorted by offset,
// drift, steps and jitter, with the stated uncertainty and state. It is safe
// for concurrent use.
type Sim struct {
	trueNow func() int64
	epoch   int64 // true time at NewSim, the origin of drift

	mu     sync.Mutex
	cfg    simConfig
	rng    *rand.Rand
	err    error
	events []simEvent // sorted by at
}

// NewSim returns a simulated clock. An invalid option does not panic: every
// Now then returns an error wrapping ErrInvalidOption.
func NewSim(opts ...SimOption) *Sim {
	cfg := simConfig{trueNow: SystemTAI}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Sim{trueNow: cfg.trueNow, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 0x9e3779b97f4a7c15))}
	if cfg.err != nil {
		s.err = fmt.Errorf("ptp: sim: %w", cfg.err)
	}
	s.epoch = s.trueNow()
	s.events = slices.Clone(cfg.events)
	slices.SortStableFunc(s.events, func(a, b simEvent) int { return cmp.Compare(a.at, b.at) })
	return s
}

// True returns the current true time from the Sim's source, for comparing a
// release instant with what really happened.
func (s *Sim) True() int64 { return s.trueNow() }

// Step jumps the clock by by (negative: backward) now.
func (s *Sim) Step(by time.Duration) {
	at := s.trueNow()
	s.mu.Lock()
	s.cfg.steps = append(s.cfg.steps, simStep{at: at, by: by})
	s.mu.Unlock()
}

// SetState changes the reported state now, as WithStateAt would.
func (s *Sim) SetState(st State, reason string) {
	at := s.trueNow()
	s.mu.Lock()
	i, _ := slices.BinarySearchFunc(s.events, at+1, func(e simEvent, t int64) int { return cmp.Compare(e.at, t) })
	s.events = slices.Insert(s.events, i, simEvent{at: at, state: st, reason: reason})
	s.mu.Unlock()
}

// Now reports the distorted clock at the current true time.
func (s *Sim) Now() (Reading, error) {
	tt := s.trueNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Reading{Reason: s.err.Error()}, s.err
	}
	c := float64(tt-s.epoch)*s.cfg.driftPPM/1e6 + float64(s.cfg.offset)
	v := tt + int64(math.Round(c))
	for _, st := range s.cfg.steps {
		if st.at <= tt {
			v += int64(st.by)
		}
	}
	if j := int64(s.cfg.jitter); j > 0 {
		v += s.rng.Int64N(2*j+1) - j
	}
	state, reason, lostAt := s.stateAt(tt)
	u := int64(s.cfg.base)
	if state != StateSynchronized {
		u += int64(math.Ceil(float64(max(tt-lostAt, 0)) * s.cfg.growthPPM / 1e6))
	}
	return Reading{Earliest: v - u, Latest: v + u, State: state, Reason: reason}, nil
}

// stateAt returns the state at true time tt and, when not synchronized, the
// true time sync was lost (the start of the current unsynchronized run).
func (s *Sim) stateAt(tt int64) (State, string, int64) {
	state, reason, lostAt := StateSynchronized, "sim: synchronized", s.epoch
	for _, e := range s.events {
		if e.at > tt {
			break
		}
		if e.state != StateSynchronized && state == StateSynchronized {
			lostAt = e.at
		}
		state, reason = e.state, e.reason
	}
	if reason == "" {
		reason = "sim: " + state.String()
	}
	return state, reason, lostAt
}
