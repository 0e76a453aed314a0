package ptp

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Constants from linux/timex.h, copied so that the adjtimex mapping builds
// and is tested on every platform.
const (
	staINS      = 0x0010 // leap second insertion pending
	staDEL      = 0x0020 // leap second deletion pending
	staUNSYNC   = 0x0040 // clock unsynchronized
	staCLOCKERR = 0x1000 // clock hardware fault
	timeERROR   = 5      // adjtimex return: clock not synchronized

	// ntpPhaseLimitUS is the kernel's cap on maxerror; reaching it sets
	// STA_UNSYNC.
	ntpPhaseLimitUS = 16_000_000
	// kernelMaxFreqPPM is the rate at which the kernel ages maxerror
	// (MAXFREQ, 500 ppm), once per second in second_overflow.
	kernelMaxFreqPPM = 500
	// kernelTickAging is the growth the kernel has not yet added at a read:
	// it bumps maxerror once per second, so up to one second of 500 ppm
	// (500 µs) may be missing from the value it reports.
	kernelTickAging = 500 * time.Microsecond
	// leapWidening covers a leap second happening between reading the TAI
	// offset and reading CLOCK_REALTIME while one is pending.
	leapWidening = time.Second
)

// Defaults for NewSystem.
const (
	// DefaultAdjtimexInterval is how long one adjtimex answer is reused.
	// adjtimex is a ~1.5 µs syscall on a VM, too slow for a spin loop;
	// reusing it adds the kernel's 500 ppm aging over the reuse age to the
	// bound (5 µs at 10 ms), which keeps the bound sound by the kernel's own
	// model. A change of kernel state (sync lost) is seen within one
	// interval.
	DefaultAdjtimexInterval = 10 * time.Millisecond
)

// kernelTime is the part of adjtimex(2)'s answer the system clock uses.
type kernelTime struct {
	State    int   // adjtimex return value, TIME_OK … TIME_ERROR
	Status   int32 // STA_* bits
	MaxError int64 // µs: the kernel's bound on CLOCK_REALTIME's error
	TAI      int32 // s: TAI − UTC, 0 when no daemon has set it
}

type systemConfig struct {
	floor       time.Duration
	taiFallback TAIOffset
	assume      bool
	assumeBound time.Duration
	interval    time.Duration
	optionErr
}

// SystemOption configures NewSystem.
type SystemOption func(*systemConfig)

// WithErrorFloor adds d to every bound, for error the kernel does not know
// about (for example the daemon's own reference error if it under-reports).
// The default is 0.
func WithErrorFloor(d time.Duration) SystemOption {
	return func(c *systemConfig) {
		c.nonNegative("error floor", d)
		c.floor = d
	}
}

// WithTAIFallback sets the TAI − UTC offset used when the kernel's is unset
// (0). The default is DefaultTAIOffset. The Reason of every reading says
// when the fallback is in use.
func WithTAIFallback(o TAIOffset) SystemOption {
	return func(c *systemConfig) {
		c.nonNegative("TAI offset", time.Duration(o))
		c.taiFallback = o
	}
}

// WithAssumeSynchronized is an operator override for a host whose clock is
// known good but not kernel-disciplined, such as a single-host demo where
// every party shares one clock. The kernel's synchronization state and
// maxerror are IGNORED: every reading is StateSynchronized with the given
// bound and a Reason saying it is assumed. Never use it on a production edge:
// if the assumption is wrong, releases can be early.
func WithAssumeSynchronized(bound time.Duration) SystemOption {
	return func(c *systemConfig) {
		c.nonNegative("assumed bound", bound)
		c.assume, c.assumeBound = true, bound
	}
}

// WithAdjtimexInterval sets how long one adjtimex answer is reused (default
// DefaultAdjtimexInterval; 0 reads it on every Now). The bound grows by the
// kernel's 500 ppm over the reuse age either way.
func WithAdjtimexInterval(d time.Duration) SystemOption {
	return func(c *systemConfig) {
		c.nonNegative("adjtimex interval", d)
		c.interval = d
	}
}

// System is CLOCK_REALTIME converted to TAI, bounded by the kernel's own
// error estimate (adjtimex maxerror). It is safe for concurrent use.
type System struct {
	cfg      systemConfig
	adjtimex func() (kernelTime, error) // seam: synthetic answers in tests
	now      func() time.Time           // seam: controlled aging in tests
	snap     atomic.Pointer[sysSnap]
}

// sysSnap is one adjtimex answer digested into what Now needs, so that the
// common read does arithmetic only and does not allocate.
type sysSnap struct {
	at     time.Time // taken before the syscall, so ages are over-estimated
	state  State
	bound  time.Duration // excluding aging since at
	aging  bool          // add the kernel's 500 ppm over the age
	tai    TAIOffset
	reason string
}

// NewSystem returns the system clock. Unless WithAssumeSynchronized is
// given, it reads adjtimex once and fails (wrapping ErrNotSupported off
// Linux) if it cannot, so that a missing interface shows up at start-up
// rather than at release time. An unsynchronized kernel is not an error
// here: readings say so and WaitUntil refuses them.
func NewSystem(opts ...SystemOption) (*System, error) {
	return newSystem(readAdjtimex, time.Now, opts...)
}

func newSystem(adj func() (kernelTime, error), now func() time.Time, opts ...SystemOption) (*System, error) {
	cfg := systemConfig{taiFallback: DefaultTAIOffset, interval: DefaultAdjtimexInterval}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, fmt.Errorf("ptp: system clock: %w", cfg.err)
	}
	s := &System{cfg: cfg, adjtimex: adj, now: now}
	if _, err := s.Now(); err != nil {
		return nil, err
	}
	return s, nil
}

// Now reads CLOCK_REALTIME (vDSO) and returns it as TAI with the kernel's
// bound. It costs one vDSO call, plus one adjtimex syscall per
// adjtimex interval.
func (s *System) Now() (Reading, error) {
	now := s.now()
	sn := s.snap.Load()
	var age time.Duration
	if sn != nil {
		age = now.Sub(sn.at)
	}
	if sn == nil || age < 0 || age > s.cfg.interval {
		var err error
		if sn, err = s.refresh(now); err != nil {
			return Reading{Reason: err.Error()}, err
		}
		age = 0
	}
	return sn.reading(now, age), nil
}

// TAIOffset returns the TAI − UTC offset the clock is converting with: the
// kernel's when set, else the configured fallback.
func (s *System) TAIOffset() TAIOffset {
	// newSystem's first read stored a snapshot; there is always one.
	return s.snap.Load().tai
}

func (s *System) refresh(at time.Time) (*sysSnap, error) {
	kt, err := s.adjtimex()
	if err != nil && !s.cfg.assume {
		return nil, fmt.Errorf("ptp: system clock: %w", err)
	}
	sn := mapKernel(kt, err == nil, &s.cfg)
	sn.at = at
	s.snap.Store(sn)
	return sn, nil
}

// mapKernel turns one adjtimex answer into a state, a bound and a reason.
// haveKernel is false when adjtimex failed, which only the assumed mode
// tolerates (it then needs nothing from the kernel but the TAI offset).
func mapKernel(kt kernelTime, haveKernel bool, cfg *systemConfig) *sysSnap {
	sn := &sysSnap{tai: cfg.taiFallback}
	taiNote := fmt.Sprintf("TAI offset %v fallback, kernel TAI offset unset", time.Duration(cfg.taiFallback))
	switch {
	case !haveKernel:
		taiNote = fmt.Sprintf("TAI offset %v fallback, adjtimex unavailable", time.Duration(cfg.taiFallback))
	case kt.TAI > 0:
		sn.tai = TAIOffset(time.Duration(kt.TAI) * time.Second)
		taiNote = fmt.Sprintf("TAI offset %ds from kernel", kt.TAI)
	}
	if cfg.assume {
		sn.state = StateSynchronized
		sn.bound = cfg.assumeBound
		sn.reason = fmt.Sprintf("synchronization ASSUMED by operator override (bound %v), kernel state ignored; %s",
			cfg.assumeBound, taiNote)
		return sn
	}
	maxErr := time.Duration(max(kt.MaxError, 0)) * time.Microsecond
	sn.bound = maxErr + kernelTickAging + cfg.floor
	sn.aging = true
	sn.state = StateSynchronized
	switch {
	case kt.Status&staUNSYNC != 0:
		sn.state, sn.reason = StateUnsynchronized, "adjtimex: STA_UNSYNC set"
	case kt.Status&staCLOCKERR != 0:
		sn.state, sn.reason = StateUnsynchronized, "adjtimex: STA_CLOCKERR set"
	case kt.State == timeERROR:
		sn.state, sn.reason = StateUnsynchronized, "adjtimex: TIME_ERROR"
	case kt.MaxError < 0 || kt.MaxError >= ntpPhaseLimitUS:
		sn.state, sn.reason = StateUnsynchronized, "adjtimex: maxerror at the kernel's 16s limit"
	default:
		sn.reason = "adjtimex: synchronized"
	}
	sn.reason += fmt.Sprintf(" (maxerror %v); %s", maxErr, taiNote)
	if kt.Status&(staINS|staDEL) != 0 {
		sn.bound += leapWidening
		sn.reason += "; leap second pending, bound widened 1s"
	}
	return sn
}

// reading converts a wall-clock time read age after the snapshot into a
// Reading.
func (sn *sysSnap) reading(now time.Time, age time.Duration) Reading {
	b := sn.bound
	if sn.aging && age > 0 {
		// 500 ppm of age, rounded up: age/2000 without overflow.
		b += (age + 1e6/kernelMaxFreqPPM - 1) / (1e6 / kernelMaxFreqPPM)
	}
	mid := sn.tai.FromTime(now)
	return Reading{Earliest: mid - int64(b), Latest: mid + int64(b), State: sn.state, Reason: sn.reason}
}
