package ptp

import (
	"errors"
	"strconv"
	"time"
)

// Errors returned by this package. Callers test with errors.Is; the returned
// errors wrap these with the operation and, for ErrUnsynchronized, the reason.
var (
	// ErrUnsynchronized means a clock cannot currently vouch for its
	// uncertainty bound, so nothing may be released against it.
	ErrUnsynchronized = errors.New("ptp: clock unsynchronized")
	// ErrNotSupported means the platform lacks the kernel interface needed
	// (adjtimex; PHC ioctls in package phc): every non-Linux build returns
	// it.
	ErrNotSupported = errors.New("ptp: not supported on this platform")
	// ErrInvalidOption means a constructor option was out of range.
	ErrInvalidOption = errors.New("ptp: invalid option")
)

// State of a clock's synchronization. The zero value is StateUnsynchronized
// so that a forgotten or zeroed Reading can never authorize a release.
type State uint8

// States, ordered from least to most trustworthy.
const (
	// StateUnsynchronized: the clock's bound is not trustworthy; refuse.
	StateUnsynchronized State = iota
	// StateHoldover: sync was lost recently; the bound has been widened by
	// the configured drift since the last synchronization and is still sound.
	StateHoldover
	// StateSynchronized: the clock is disciplined and its bound holds.
	StateSynchronized
)

// String returns the lower-case state name used in logs and metrics.
func (s State) String() string {
	switch s {
	case StateUnsynchronized:
		return "unsynchronized"
	case StateHoldover:
		return "holdover"
	case StateSynchronized:
		return "synchronized"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Reading is one read of a clock: the true TAI time lies in
// [Earliest, Latest] (TAI nanoseconds since 1970-01-01T00:00:00 TAI) whenever
// State is not StateUnsynchronized and the source's stated error budget holds.
// An unsynchronized Reading still carries the clock's best guess, for
// display only.
type Reading struct {
	Earliest, Latest int64
	State            State
	// Reason says why the clock is in State, for operators; it is not
	// meant to be parsed.
	Reason string
	// DataAge is how old the data behind the bound was at this read (a
	// time daemon's last answer, which the bound has been widened over);
	// 0 when the clock does not say, as the kernel's and a PHC's do not.
	DataAge time.Duration
}

// Uncertainty is the half-width of the interval, (Latest-Earliest)/2.
func (r Reading) Uncertainty() time.Duration {
	return time.Duration((r.Latest - r.Earliest) / 2)
}

// Mid is the centre of the interval, the clock's best single estimate.
// It is computed without overflow for any pair of int64 bounds.
func (r Reading) Mid() int64 {
	return r.Earliest + (r.Latest-r.Earliest)/2
}

// Clock is the one seam everything time-related goes through.
type Clock interface {
	// Now reads the clock. It must be cheap enough to call in a spin loop
	// (≲ 1 µs typical) and safe for concurrent use. A clock that cannot
	// vouch for its bound returns a Reading with StateUnsynchronized and a
	// nil error; errors are reserved for failures to read at all.
	Now() (Reading, error)
}
