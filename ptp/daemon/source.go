package daemon

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// Errors returned by this package, wrapped with the source and the operation.
var (
	// ErrNoAnswer means the daemon did not answer on its socket at open:
	// it is not running, the path is wrong, or the socket is not readable.
	ErrNoAnswer = errors.New("daemon: no answer on its socket")
	// ErrNoFBClock means this binary was built without fbclock, whose
	// Linux reader is cgo.
	ErrNoFBClock = errors.New("built without fbclock: rebuild on Linux with cgo and -tags fbclock")
)

// Defaults for every source.
const (
	// DefaultDriftPPM is the rate, beyond what the daemon itself reports,
	// at which a bound widens with the age of the daemon's data: a
	// free-running crystal left at its last frequency correction wanders
	// a few ppm with temperature; 15 ppm leaves margin (chrony's own
	// maxclockerror default is 1 ppm, linuxptp's servo assumes ≤ 500 ppm of
	// raw error but corrects it every sync).
	DefaultDriftPPM = 15.0
	// DefaultPoll is the longest wait between two questions to a daemon;
	// a daemon that updates faster is asked at its own rate, never faster
	// than MinPoll.
	DefaultPoll = time.Second
	// MinPoll bounds how often a daemon is asked, whatever its rate.
	MinPoll = 100 * time.Millisecond
	// DefaultStaleUpdates is how many of the daemon's own update intervals
	// its data may age before the source holds (see WithMaxAge).
	DefaultStaleUpdates = 4
	// DefaultMinMaxAge is the least staleness limit when it follows the
	// daemon's update interval.
	DefaultMinMaxAge = 4 * time.Second
)

// sample is one answer of a daemon, digested: its own error estimate at the
// time its data was taken, and whether it vouches for it at all.
type sample struct {
	synced bool
	// summary says what the daemon reported (or why it does not vouch),
	// for the reading's Reason.
	summary string
	// bound is the daemon's own error estimate, as its project defines it,
	// at dataTAI.
	bound time.Duration
	// dataTAI is when the daemon's data was taken, TAI ns by the base
	// clock (0: unknown, taken as the moment of the answer).
	dataTAI int64
	// skewPPM is drift the daemon itself reports, widening the bound with
	// age beyond the configured rate.
	skewPPM float64
	// interval is the daemon's update interval, 0 when it does not say.
	interval time.Duration
}

type config struct {
	driftPPM float64
	poll     time.Duration
	maxAge   time.Duration
	timeout  time.Duration
	base     ptp.Clock
	tai      func() ptp.TAIOffset
	now      func() time.Time
	err      error
}

func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %s", ptp.ErrInvalidOption, fmt.Sprintf(format, args...))
	}
}

// Option configures a source.
type Option func(*config)

// WithDriftPPM sets the rate, in ppm, at which the bound widens with the
// age of the daemon's data, on top of any drift the daemon reports
// (default DefaultDriftPPM).
func WithDriftPPM(ppm float64) Option {
	return func(c *config) {
		if !(ppm >= 0 && ppm <= 1e6) { // also rejects NaN
			c.invalid("drift %v ppm", ppm)
		}
		c.driftPPM = ppm
	}
}

// WithPoll sets the longest wait between two questions to the daemon
// (default DefaultPoll; at least MinPoll).
func WithPoll(d time.Duration) Option {
	return func(c *config) {
		if d < MinPoll {
			c.invalid("poll %v below %v", d, MinPoll)
		}
		c.poll = d
	}
}

// WithMaxAge sets how old the daemon's data may be before the source holds
// (reads unsynchronized). The default, 0, is DefaultStaleUpdates of the
// daemon's own update intervals and at least DefaultMinMaxAge.
func WithMaxAge(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.invalid("negative max age %v", d)
		}
		c.maxAge = d
	}
}

// WithBase sets the clock the daemon disciplines, read for the time itself
// (default: the system clock, CLOCK_REALTIME converted to TAI with the
// kernel's offset, taken as exact). The daemon's bound is added to the
// base's own uncertainty, so a base should state only its read error (a
// PHC opened with a zero error budget, for instance).
func WithBase(b ptp.Clock) Option {
	return func(c *config) {
		if b == nil {
			c.invalid("nil base clock")
			return
		}
		c.base = b
	}
}

// withTAI sets the TAI − UTC offset daemons' UTC stamps convert with (tests).
func withTAI(o ptp.TAIOffset) Option {
	return func(c *config) { c.tai = func() ptp.TAIOffset { return o } }
}

func newConfig(opts []Option) (config, error) {
	c := config{driftPPM: DefaultDriftPPM, poll: DefaultPoll, now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	c.timeout = min(c.poll/2, time.Second)
	if c.err != nil || (c.base != nil && c.tai != nil) {
		return c, c.err
	}
	// The system clock taken as exact: the daemon's bound is the whole
	// error; it also gives the kernel's TAI offset.
	sys, err := ptp.NewSystem(ptp.WithAssumeSynchronized(0))
	if err != nil {
		return c, err
	}
	if c.base == nil {
		c.base = sys
	}
	if c.tai == nil {
		c.tai = sys.TAIOffset
	}
	return c, nil
}

// prepare is what every socket source does first: name it, configure it
// and make its connection to the daemon's socket (def when socket is "").
func prepare(kind, socket, def string, opts []Option) (string, config, *unixgram, error) {
	if socket == "" {
		socket = def
	}
	name := kind + " " + socket
	cfg, err := newConfig(opts)
	if err != nil {
		return name, cfg, nil, fmt.Errorf("%s: %w", name, err)
	}
	return name, cfg, &unixgram{remote: socket, prefix: kind, timeout: cfg.timeout}, nil
}

// snapshot is the last answer, placed on the local monotonic clock.
type snapshot struct {
	sample
	dataAt time.Time // local monotonic time of the daemon's data
	err    error     // the last question's failure, nil if it was answered
}

// Status is what an operator sees of a source: its name, state, bound and
// the age of the data behind it.
type Status struct {
	// Source names the daemon and its socket, e.g. "chrony /run/chrony/chronyd.sock".
	Source  string
	State   ptp.State
	Bound   time.Duration
	DataAge time.Duration
	Reason  string
}

// Source is a ptp.Clock whose bound comes from a time daemon. A goroutine
// asks the daemon at its own update rate (between MinPoll and the poll
// option); Now reads the base clock and the last answer only, so it costs
// no more than the base. The bound is the daemon's own estimate, widened by
// the base's read uncertainty and by the stated ppm over the age of the
// daemon's data. A daemon that does not vouch for its clock, stops
// answering, or whose data is older than the staleness limit makes every
// reading unsynchronized, so releases hold. It is safe for concurrent use.
type Source struct {
	name  string
	cfg   config
	query func() (sample, error)
	close func() error
	snap  atomic.Pointer[snapshot]

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// start asks the daemon once (failing with ErrNoAnswer if it cannot) and
// starts the poller.
func start(name string, cfg config, query func() (sample, error), closer func() error) (*Source, error) {
	s := &Source{name: name, cfg: cfg, query: query, close: closer,
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.refresh(); err != nil {
		if closer != nil {
			closer()
		}
		return nil, fmt.Errorf("%s: %w: %w", name, ErrNoAnswer, err)
	}
	go s.run()
	return s, nil
}

// refresh asks the daemon once and stores the answer. A failed question
// keeps the previous answer, which then ages towards staleness.
func (s *Source) refresh() error {
	smp, err := s.query()
	if err != nil {
		old := s.snap.Load()
		if old != nil {
			nw := *old
			nw.err = err
			s.snap.Store(&nw)
		}
		return err
	}
	at := s.cfg.now()
	var age0 time.Duration
	if smp.dataTAI != 0 {
		if rd, berr := s.cfg.base.Now(); berr == nil {
			// An age the base reads as negative (a stamp ahead of
			// the base) counts as 0: ages only widen.
			age0 = max(time.Duration(rd.Mid()-smp.dataTAI), 0)
		}
	}
	s.snap.Store(&snapshot{sample: smp, dataAt: at.Add(-age0)})
	return nil
}

func (s *Source) run() {
	defer close(s.done)
	t := time.NewTimer(s.nextPoll())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.refresh()
			t.Reset(s.nextPoll())
		}
	}
}

// nextPoll is the daemon's own update interval, within [MinPoll, poll].
func (s *Source) nextPoll() time.Duration {
	iv := s.cfg.poll
	if sn := s.snap.Load(); sn != nil && sn.interval > 0 {
		iv = min(max(sn.interval, MinPoll), s.cfg.poll)
	}
	return iv
}

// maxAge is the staleness limit for an answer.
func (s *Source) maxAge(sn *snapshot) time.Duration {
	if s.cfg.maxAge > 0 {
		return s.cfg.maxAge
	}
	return max(DefaultStaleUpdates*max(sn.interval, s.cfg.poll), DefaultMinMaxAge)
}

// Close stops the poller and closes the daemon's socket. Readings after
// Close age towards staleness like a silent daemon's.
func (s *Source) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.close != nil {
			err = s.close()
		}
	})
	return err
}

// Name names the daemon and its socket.
func (s *Source) Name() string { return s.name }

// Now implements ptp.Clock.
func (s *Source) Now() (ptp.Reading, error) {
	rd, err := s.cfg.base.Now()
	if err != nil {
		return rd, fmt.Errorf("%s: base clock: %w", s.name, err)
	}
	st := s.status(rd, s.cfg.now())
	mid := rd.Mid()
	return ptp.Reading{Earliest: mid - int64(st.Bound), Latest: mid + int64(st.Bound), State: st.State, Reason: st.Reason, DataAge: st.DataAge}, nil
}

// Status reports the source's state, bound and data age now.
func (s *Source) Status() Status {
	rd, err := s.cfg.base.Now()
	if err != nil {
		return Status{Source: s.name, Reason: "base clock: " + err.Error()}
	}
	return s.status(rd, s.cfg.now())
}

func (s *Source) status(base ptp.Reading, now time.Time) Status {
	sn := s.snap.Load() // start stored one; there is always one
	age := max(now.Sub(sn.dataAt), 0)
	st := Status{Source: s.name, DataAge: age, State: ptp.StateSynchronized}
	st.Bound = sn.bound + base.Uncertainty() + widen(age, s.cfg.driftPPM+math.Abs(sn.skewPPM))
	limit := s.maxAge(sn)
	switch {
	case base.State == ptp.StateUnsynchronized:
		st.State, st.Reason = ptp.StateUnsynchronized, s.name+": base clock unsynchronized: "+base.Reason
	case !sn.synced:
		st.State, st.Reason = ptp.StateUnsynchronized, s.name+": "+sn.summary
	case age > limit:
		st.State = ptp.StateUnsynchronized
		st.Reason = fmt.Sprintf("%s: data %v old, over the %v staleness limit (last: %s)", s.name, age.Round(time.Millisecond), limit, sn.summary)
	default:
		st.Reason = fmt.Sprintf("%s: %s; bound %v at data age %v", s.name, sn.summary, st.Bound, age.Round(time.Millisecond))
	}
	if sn.err != nil {
		st.Reason += "; last question failed: " + sn.err.Error()
	}
	return st
}

// maxBound caps every term of a bound (36 years: no release waits on it),
// so that their sum and an instant ± it cannot overflow.
const maxBound = math.MaxInt64 / 8

// widen is ppm of age, rounded up, saturating at maxBound.
func widen(age time.Duration, ppm float64) time.Duration {
	w := math.Ceil(float64(age) * ppm / 1e6)
	if w >= maxBound {
		return maxBound
	}
	return time.Duration(w)
}

// boundOf converts a daemon's figure in seconds to a Duration, rounding up
// and saturating; NaN and negative figures are 0 (callers refuse an error
// estimate that is either before converting it).
func boundOf(sec float64) time.Duration {
	ns := math.Ceil(sec * 1e9)
	switch {
	case !(ns > 0):
		return 0
	case ns >= maxBound:
		return maxBound
	}
	return time.Duration(ns)
}
