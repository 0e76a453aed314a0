//go:build !(linux && cgo && fbclock)

package daemon

import (
	"fmt"

	"github.com/embargo-live/embargo/ptp"
)

// FBClock is fbclock's window; this build has none (see ErrNoFBClock).
type FBClock struct{}

// OpenFBClock returns an error wrapping ErrNoFBClock and
// ptp.ErrNotSupported: fbclock's Linux reader is cgo (its C library reads
// the PHC and the shared memory), so a pure-Go build cannot have it.
func OpenFBClock(path string) (*FBClock, error) {
	return nil, fmt.Errorf("fbclock %s: %w (%w)", path, ErrNoFBClock, ptp.ErrNotSupported)
}

// Now reports unsynchronized: there is no fbclock in this build.
func (*FBClock) Now() (ptp.Reading, error) { return ptp.Reading{Reason: ErrNoFBClock.Error()}, nil }

// Close does nothing.
func (*FBClock) Close() error { return nil }
