package daemon

import (
	"fmt"
	"math"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// Estimate is one answer of a time daemon, for OpenFunc: its own error
// estimate and whether it vouches for it.
type Estimate struct {
	// Synced is false when the daemon does not vouch for its clock: the
	// source then reads unsynchronized and releases hold.
	Synced bool
	// Summary says what the daemon reported, or why it does not vouch.
	Summary string
	// Bound is the daemon's own error estimate at DataTAI.
	Bound time.Duration
	// DataTAI is when the daemon's data was taken, TAI ns by the base
	// clock; 0 takes it as the moment of the answer.
	DataTAI int64
	// SkewPPM is drift the daemon reports, widening the bound with age
	// beyond the configured rate.
	SkewPPM float64
	// Interval is the daemon's update interval, 0 when it does not say.
	Interval time.Duration
}

// OpenFunc returns a source named name whose answers come from query,
// asked as OpenChrony asks chronyd: a daemon this package has no client
// for plugs in here, and a test drives a source through it with scripted
// answers (give it a ptp.Sim with WithBase to run in virtual time). The
// bound, ageing and states are those of every Source.
func OpenFunc(name string, query func() (Estimate, error), opts ...Option) (*Source, error) {
	// Estimates are on the base's TAI already: no UTC stamp to convert.
	cfg, err := newConfig(append([]Option{withTAI(ptp.DefaultTAIOffset)}, opts...))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return start(name, cfg, func() (sample, error) {
		e, err := query()
		s := sample{synced: e.Synced, summary: e.Summary, bound: min(e.Bound, maxBound), dataTAI: e.DataTAI,
			skewPPM: e.SkewPPM, interval: max(e.Interval, 0)}
		if e.Bound < 0 || math.IsNaN(e.SkewPPM) || math.IsInf(e.SkewPPM, 0) {
			// Never a narrower bound than the daemon could mean.
			s.synced, s.bound, s.skewPPM = false, 0, 0
			s.summary = fmt.Sprintf("invalid estimate (bound %v, skew %v ppm); %s", e.Bound, e.SkewPPM, e.Summary)
		}
		return s, err
	}, nil)
}
