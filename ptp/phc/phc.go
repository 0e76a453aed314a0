package phc

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// Errors returned by this package, wrapped with the device's name. Invalid
// options wrap ptp.ErrInvalidOption and other platforms ptp.ErrNotSupported,
// so callers test for those as they would for any ptp clock.
var (
	// ErrNoDevice means the named device or interface does not exist or
	// has no hardware clock.
	ErrNoDevice = errors.New("phc: no PTP hardware clock")
	// ErrClosed is returned by reads of a Clock after Close.
	ErrClosed = errors.New("phc: clock closed")
)

// Defaults for Open. They are conservative starting points; operators
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

type config struct {
	budget      time.Duration
	driftPPM    float64
	maxHoldover time.Duration
	sync        SyncSource
	syncedNote  string
	err         error
}

// invalid records the first invalid option, so that options report errors
// instead of panicking and Open returns the first one.
func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %s", ptp.ErrInvalidOption, fmt.Sprintf(format, args...))
	}
}

func (c *config) nonNegative(what string, d time.Duration) {
	if d < 0 {
		c.invalid("negative %s %v", what, d)
	}
}

// Option configures Open.
type Option func(*config)

// WithErrorBudget sets the PTP error budget added to every PHC bound
// (default DefaultErrorBudget).
func WithErrorBudget(d time.Duration) Option {
	return func(c *config) {
		c.nonNegative("error budget", d)
		c.budget = d
	}
}

// WithHoldoverDrift sets how fast, in ppm, the bound grows from the last
// synchronized time while in holdover (default DefaultHoldoverDrift).
func WithHoldoverDrift(ppm float64) Option {
	return func(c *config) {
		if !(ppm >= 0 && ppm <= 1e6) { // also rejects NaN
			c.invalid("holdover drift %v ppm", ppm)
		}
		c.driftPPM = ppm
	}
}

// WithMaxHoldover sets how long after the last synchronization the PHC is
// trusted at all (default DefaultMaxHoldover); beyond it, readings are
// unsynchronized.
func WithMaxHoldover(d time.Duration) Option {
	return func(c *config) {
		c.nonNegative("max holdover", d)
		c.maxHoldover = d
	}
}

// WithSyncSource sets where sync status comes from (default
// AlwaysSynchronized).
func WithSyncSource(s SyncSource) Option {
	return func(c *config) {
		if s == nil {
			c.invalid("nil SyncSource")
			return
		}
		c.sync = s
	}
}

func newConfig(opts []Option) (config, error) {
	c := config{
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

// sample is one read of the PHC (TAI ns) bracketed by two reads of a
// reference clock (ns). The PHC was read at an unknown instant in
// [Before, After].
type sample struct {
	Before, PHC, After int64
}

func (s sample) window() int64 { return max(s.After-s.Before, 0) }

// bestSample picks the sample with the narrowest read window, the one least
// disturbed by interrupts or bus contention (as ptp4l's sysoff_estimate).
func bestSample(samples []sample) (sample, bool) {
	if len(samples) == 0 {
		return sample{}, false
	}
	best := samples[0]
	for _, s := range samples[1:] {
		if s.window() < best.window() {
			best = s
		}
	}
	return best, true
}

// readingOf turns a sample into a ptp.Reading valid from After on. The PHC
// value may be as old as the window when the read returns, so true time is
// at least PHC − e and at most PHC + window + e, where e is the error budget
// plus holdover growth: the half-width is window/2 + e.
func readingOf(s sample, last time.Time, synced bool, now time.Time, cfg *config) ptp.Reading {
	e := cfg.budget
	state, reason := ptp.StateSynchronized, cfg.syncedNote
	if !synced {
		age := max(now.Sub(last), 0)
		switch {
		case last.IsZero():
			state, reason = ptp.StateUnsynchronized, "PHC never synchronized (sync source)"
		case age > cfg.maxHoldover:
			state = ptp.StateUnsynchronized
			reason = "PHC holdover " + age.Round(100*time.Millisecond).String() +
				" exceeds max " + cfg.maxHoldover.String()
		default:
			state = ptp.StateHoldover
			reason = "PHC holdover " + age.Round(100*time.Millisecond).String()
		}
		e += driftOver(age, cfg.driftPPM)
	}
	return ptp.Reading{
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
	// TAI and the system clock on UTC it is about −(TAI − UTC) when both are
	// right; see SystemError.
	Offset time.Duration
	// Window is the read window of the sample used (0 for
	// PTP_SYS_OFFSET_PRECISE, which cross-timestamps in hardware).
	Window time.Duration
	// Method names the ioctl used.
	Method string
	// PHC is the PHC reading taken by the measurement.
	PHC ptp.Reading
}

// SystemError is how far the system clock, converted to TAI with off, is
// ahead of the PHC (negative: behind).
func (o SysOffset) SystemError(off ptp.TAIOffset) time.Duration {
	return o.Offset + time.Duration(off)
}

// sysOffsetFrom computes the offset from a sample whose reference is
// CLOCK_REALTIME, taking the middle of the window as the PHC's instant.
func sysOffsetFrom(s sample, method string, phc ptp.Reading) SysOffset {
	mid := s.Before + s.window()/2
	return SysOffset{Offset: time.Duration(mid - s.PHC), Window: time.Duration(s.window()), Method: method, PHC: phc}
}
