package ptp

import (
	"math"
	"sync/atomic"
	"time"
)

// Defaults for NewPHC. They are conservative starting points; operators
// should set them from their PTP monitoring.
const (
	// DefaultErrorBudget covers the PTP domain's error at the PHC
	// (grandmaster accuracy, path asymmetry, servo noise). Hardware
	// timestamping on a LAN usually does far better than 100 µs.
	DefaultErrorBudget = 100 * time.Microsecond
	// DefaultHoldoverDrift is the rate the error may grow once the servo
	// stops steering: a NIC oscillator left at its last frequency
	// correction typically wanders a few ppm; 10 ppm leaves margin.
	DefaultHoldoverDrift = 10.0
	// DefaultMaxHoldover is how long holdover is trusted (600 µs of growth
	// at the default drift) before the clock reads unsynchronized.
	DefaultMaxHoldover = 60 * time.Second
)

// SyncSource reports whether the PTP servo keeping a PHC is locked. A
// ptp4l/pmc monitor is expected to implement it; SyncTracker is a ready-made
// one to feed.
type SyncSource interface {
	// LastSync reports whether the PHC is synchronized now and, when it is
	// not, the last time it was (zero if never). It is called on every
	// read of the clock, so it must be cheap and safe for concurrent use.
	LastSync() (last time.Time, synced bool)
}

// AlwaysSynchronized is the default SyncSource: it treats the PHC as
// synchronized, trusting whatever disciplines it (ptp4l) to keep it within
// the error budget. Readings say "assumed" in their Reason. Configure a real
// SyncSource with WithSyncSource to get holdover and refusal on sync loss.
type AlwaysSynchronized struct{}

// LastSync always reports synchronized.
func (AlwaysSynchronized) LastSync() (time.Time, bool) { return time.Time{}, true }

// SyncTracker is a SyncSource driven by the operator's sync monitor: call
// Synced each time the servo is seen locked and Lost when it is seen
// unlocked. A monitor that stops reporting is treated as lost sync once
// fresh has passed since the last Synced, so a dead monitor cannot keep a
// PHC "synchronized" forever. It starts never-synchronized and is safe for
// concurrent use.
type SyncTracker struct {
	fresh time.Duration
	st    atomic.Pointer[trackerState]
}

type trackerState struct {
	last time.Time
	lost bool
}

// NewSyncTracker returns a tracker whose Synced reports stay valid for
// fresh; a fresh ≤ 0 makes every report stale at once (always holdover).
func NewSyncTracker(fresh time.Duration) *SyncTracker {
	t := &SyncTracker{fresh: fresh}
	t.st.Store(&trackerState{})
	return t
}

// Synced records that the servo was locked at at (use time.Now(), whose
// monotonic reading makes ages immune to wall-clock steps).
func (t *SyncTracker) Synced(at time.Time) { t.st.Store(&trackerState{last: at}) }

// Lost records that the servo is unlocked; holdover counts from the last
// Synced.
func (t *SyncTracker) Lost() {
	for {
		old := t.st.Load()
		if t.st.CompareAndSwap(old, &trackerState{last: old.last, lost: true}) {
			return
		}
	}
}

// LastSync implements SyncSource.
func (t *SyncTracker) LastSync() (time.Time, bool) {
	s := t.st.Load()
	if s.lost || s.last.IsZero() {
		return s.last, false
	}
	return s.last, time.Since(s.last) <= t.fresh
}

type phcConfig struct {
	budget      time.Duration
	driftPPM    float64
	maxHoldover time.Duration
	sync        SyncSource
	syncedNote  string
	optionErr
}

// PHCOption configures NewPHC.
type PHCOption func(*phcConfig)

// WithErrorBudget sets the PTP error budget added to every PHC bound
// (default DefaultErrorBudget).
func WithErrorBudget(d time.Duration) PHCOption {
	return func(c *phcConfig) {
		c.nonNegative("error budget", d)
		c.budget = d
	}
}

// WithHoldoverDrift sets how fast, in ppm, the bound grows from the last
// synchronized time while in holdover (default DefaultHoldoverDrift).
func WithHoldoverDrift(ppm float64) PHCOption {
	return func(c *phcConfig) {
		if !(ppm >= 0 && ppm <= 1e6) { // also rejects NaN
			c.invalid("holdover drift %v ppm", ppm)
		}
		c.driftPPM = ppm
	}
}

// WithMaxHoldover sets how long after the last synchronization the PHC is
// trusted at all (default DefaultMaxHoldover); beyond it, readings are
// unsynchronized.
func WithMaxHoldover(d time.Duration) PHCOption {
	return func(c *phcConfig) {
		c.nonNegative("max holdover", d)
		c.maxHoldover = d
	}
}

// WithSyncSource sets where sync status comes from (default
// AlwaysSynchronized).
func WithSyncSource(s SyncSource) PHCOption {
	return func(c *phcConfig) {
		if s == nil {
			c.invalid("nil SyncSource")
			return
		}
		c.sync = s
	}
}

func newPHCConfig(opts []PHCOption) (phcConfig, error) {
	c := phcConfig{
		budget:      DefaultErrorBudget,
		driftPPM:    DefaultHoldoverDrift,
		maxHoldover: DefaultMaxHoldover,
		sync:        AlwaysSynchronized{},
	}
	for _, o := range opts {
		o(&c)
	}
	c.syncedNote = "PHC synchronized (sync source)"
	if _, ok := c.sync.(AlwaysSynchronized); ok {
		c.syncedNote = "PHC synchronized (ASSUMED: no SyncSource configured)"
	}
	return c, c.err
}

// phcSample is one read of the PHC (TAI ns) bracketed by two reads of a
// reference clock (ns). The PHC was read at an unknown instant in
// [Before, After].
type phcSample struct {
	Before, PHC, After int64
}

func (s phcSample) window() int64 { return max(s.After-s.Before, 0) }

// bestSample picks the sample with the narrowest read window, the one least
// disturbed by interrupts or bus contention (as ptp4l's sysoff_estimate).
func bestSample(samples []phcSample) (phcSample, bool) {
	if len(samples) == 0 {
		return phcSample{}, false
	}
	best := samples[0]
	for _, s := range samples[1:] {
		if s.window() < best.window() {
			best = s
		}
	}
	return best, true
}

// phcReading turns a sample into a Reading valid from After on. The PHC
// value may be as old as the window when the read returns, so true time is
// at least PHC − e and at most PHC + window + e, where e is the error budget
// plus holdover growth: the half-width is window/2 + e.
func phcReading(s phcSample, last time.Time, synced bool, now time.Time, cfg *phcConfig) Reading {
	e := cfg.budget
	state, reason := StateSynchronized, cfg.syncedNote
	if !synced {
		age := max(now.Sub(last), 0)
		switch {
		case last.IsZero():
			state, reason = StateUnsynchronized, "PHC never synchronized (sync source)"
		case age > cfg.maxHoldover:
			state = StateUnsynchronized
			reason = "PHC holdover " + age.Round(100*time.Millisecond).String() +
				" exceeds max " + cfg.maxHoldover.String()
		default:
			state = StateHoldover
			reason = "PHC holdover " + age.Round(100*time.Millisecond).String()
		}
		e += driftOver(age, cfg.driftPPM)
	}
	return Reading{
		Earliest: s.PHC - int64(e),
		Latest:   s.PHC + s.window() + int64(e),
		State:    state,
		Reason:   reason,
	}
}

// driftOver is ppm of d, rounded up so the bound never shrinks by rounding.
func driftOver(d time.Duration, ppm float64) time.Duration {
	g := math.Ceil(float64(d) * ppm / 1e6)
	if g >= float64(1<<62) {
		return 1 << 62
	}
	return time.Duration(g)
}

// SysOffset is one measurement of the system clock against the PHC.
type SysOffset struct {
	// Offset is CLOCK_REALTIME − PHC at the same instant. With the PHC on
	// TAI and the system clock on UTC it is about −TAIOffset when both are
	// right; see SystemError.
	Offset time.Duration
	// Window is the read window of the sample used (0 for
	// PTP_SYS_OFFSET_PRECISE, which cross-timestamps in hardware).
	Window time.Duration
	// Method names the ioctl used.
	Method string
	// PHC is the PHC reading taken by the measurement.
	PHC Reading
}

// SystemError is how far the system clock, converted to TAI with off, is
// ahead of the PHC (negative: behind).
func (o SysOffset) SystemError(off TAIOffset) time.Duration {
	return o.Offset + time.Duration(off)
}

// sysOffsetFrom computes the offset from a sample whose reference is
// CLOCK_REALTIME, taking the middle of the window as the PHC's instant.
func sysOffsetFrom(s phcSample, method string, phc Reading) SysOffset {
	mid := s.Before + s.window()/2
	return SysOffset{Offset: time.Duration(mid - s.PHC), Window: time.Duration(s.window()), Method: method, PHC: phc}
}
