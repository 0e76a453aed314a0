package bpf

import (
	"errors"
	"fmt"
	"math"

	"github.com/embargo-live/embargo/engine/receiver/skew"
)

// Errors returned by this package. Callers test with errors.Is; returned
// errors wrap these with the operation and, where there is one, the kernel's
// error.
var (
	// ErrNotSupported means this kernel or platform cannot load the filter:
	// not Linux, BPF disabled, or a helper or map type missing (the program
	// needs bpf_ktime_get_tai_ns, Linux 6.1). Callers fall back to
	// SO_TIMESTAMPNS stamps and a user-space Histogram.
	ErrNotSupported = errors.New("bpf: not supported")
	// ErrNotPermitted means the kernel refused to load the filter for lack of
	// privilege (EPERM/EACCES: not root, no CAP_BPF, or
	// kernel.unprivileged_bpf_disabled). Same fallback as ErrNotSupported.
	ErrNotPermitted = errors.New("bpf: not permitted")
	// ErrInvalidOption means an option or SetLoss argument was out of range.
	ErrInvalidOption = errors.New("bpf: invalid option")
	// ErrClosed is returned by every method of a Filter after Close.
	ErrClosed = errors.New("bpf: filter closed")
)

// Verdict names, the keys of Filter.Verdicts. Every datagram the filter sees
// is counted under exactly one of the names except VerdictRelease, which
// counts the subset of VerdictPass that are RELEASEs. Drop reasons follow
// wire.Peek's order and errors, so the kernel and user space agree on why a
// datagram is refused.
const (
	VerdictPass     = "pass"     // well-formed: passed to the socket
	VerdictRelease  = "release"  // passed RELEASEs (also counted in VerdictPass)
	VerdictShort    = "short"    // shorter than the header (wire.ErrTruncated)
	VerdictLong     = "long"     // longer than wire.MaxDatagram (wire.ErrOversized)
	VerdictMagic    = "magic"    // wire.ErrMagic
	VerdictVersion  = "version"  // wire.ErrVersion
	VerdictType     = "type"     // wire.ErrUnknownType
	VerdictFlags    = "flags"    // unknown critical flag (wire.ErrFlags)
	VerdictLength   = "length"   // length field ≠ datagram, or RELEASE ≠ 80 bytes (wire.ErrLength)
	VerdictReserved = "reserved" // header or RELEASE reserved field not zero (wire.ErrReserved)
	// VerdictInjectedLoss counts datagrams dropped on purpose by SetLoss, before
	// any other check, as if the network had lost them.
	VerdictInjectedLoss = "injected-loss"
	// VerdictUnparsed counts datagrams passed without inspection because the
	// packet did not start with a UDP header whose length matches it. On the
	// kernels this was built on that never happens on a UDP socket; the
	// count exists so that a kernel that changes the layout fails open and
	// visibly rather than dropping everything.
	VerdictUnparsed = "unparsed"
	// VerdictSource counts datagrams dropped, before any other check but
	// injected loss, because they came from an address not among those
	// SetSources set: the edges a receiver is configured with. None is
	// counted while no source is set.
	VerdictSource = "source"
)

// DefaultMaxArrivals bounds the first-arrival map. It is an LRU map, so it
// never fills up: the least recently used (stream, period) is evicted. At a
// period every 2 s that is 36 hours of one stream, or 20 minutes of a
// hundred.
const DefaultMaxArrivals = 65536

// Slots of the filter's config map.
const (
	configLoss          = 0 // loss threshold, see lossThreshold
	configTAICorrection = 1 // ns added to CLOCK_TAI, see SetTAIOffset
	configSources       = 2 // non-zero: drop sources not in the sources map, see SetSources
	configSlots         = 3
)

// MaxSources is the most addresses SetSources takes.
const MaxSources = 64

// The histogram layout the kernel program computes: package skew's.
const (
	linearBuckets  = skew.LinearBuckets
	subBuckets     = skew.SubBuckets
	subBits        = skew.SubBits
	firstOctave    = skew.FirstOctave
	overflowMicro  = skew.OverflowMicro
	overflowBucket = skew.OverflowBucket
	numBuckets     = skew.NumBuckets
)

// Option configures NewFilter.
type Option func(*config)

type config struct {
	loss        float64
	maxArrivals int
	err         error // first invalid option
}

func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
	}
}

// WithLoss makes the filter drop a random fraction p (0 ≤ p ≤ 1) of all
// datagrams, counted as VerdictInjectedLoss: a loss injector for tests and
// lab runs. SetLoss changes it later. The default is 0.
func WithLoss(p float64) Option {
	return func(c *config) {
		if _, err := lossThreshold(p); err != nil {
			c.invalid("loss %v", p)
		}
		c.loss = p
	}
}

// WithMaxArrivals sets how many (stream, period) first arrivals the kernel
// keeps (default DefaultMaxArrivals). Kernel memory is about 100 bytes per
// entry, allocated up front.
func WithMaxArrivals(n int) Option {
	return func(c *config) {
		if n < 1 || n > 1<<24 {
			c.invalid("max arrivals %d not in [1, 2^24]", n)
		}
		c.maxArrivals = n
	}
}

func newConfig(opts []Option) (config, error) {
	c := config{maxArrivals: DefaultMaxArrivals}
	for _, o := range opts {
		o(&c)
	}
	return c, c.err
}

// lossThreshold converts a drop probability into the kernel's comparison
// value: a datagram is dropped when a uniform 32-bit random number is below
// it, so 2^32 drops everything and 0 nothing.
func lossThreshold(p float64) (uint64, error) {
	if !(p >= 0 && p <= 1) { // also NaN
		return 0, fmt.Errorf("%w: loss %v not in [0, 1]", ErrInvalidOption, p)
	}
	return uint64(math.Round(p * (1 << 32))), nil
}
