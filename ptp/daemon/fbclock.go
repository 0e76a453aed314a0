//go:build linux && cgo && fbclock

package daemon

import (
	"fmt"
	"sync"

	"github.com/facebook/time/fbclock"

	"github.com/embargo-live/embargo/ptp"
)

// FBClock reads facebook/time's fbclock: fbclock-daemon (fed by ptp4l)
// publishes in shared memory the error bound of the last sync and a
// holdover multiplier, and the fbclock C library reads the PHC and returns
// the window [earliest, latest] = PHC time ∓ (error bound + holdover
// multiplier × time since the last sync), as facebook/time/fbclock
// defines it (fbclock.c, fbclock_gettime; the bound's default expression
// is fbclock/daemon's MathDefaultW over M = mean(clockaccuracy) +
// abs(mean(offset)) + stddev(offset)). The window is taken as is: fbclock
// already widens it with data age. Any error fbclock reports (no data,
// data too old, a window too wide, a PHC read failure) reads as
// unsynchronized with fbclock's message. It needs cgo, -lrt and the PHC
// fbclock-daemon serves (/dev/fbclock/ptp), so it is built only with
// -tags fbclock. It is safe for concurrent use.
type FBClock struct {
	name string
	mu   sync.Mutex // fbclock_lib is not documented as thread-safe
	c    *fbclock.FBClock
}

// OpenFBClock opens fbclock's shared memory at path ("" for fbclock's
// default) and reads it once.
func OpenFBClock(path string) (*FBClock, error) {
	var c *fbclock.FBClock
	var err error
	if path == "" {
		path = "default"
		c, err = fbclock.NewFBClockV2()
	} else {
		c, err = fbclock.NewFBClockCustom(path)
	}
	if err != nil {
		return nil, fmt.Errorf("fbclock %s: %w", path, err)
	}
	return &FBClock{name: "fbclock " + path, c: c}, nil
}

// Now implements ptp.Clock.
func (f *FBClock) Now() (ptp.Reading, error) {
	f.mu.Lock()
	tt, err := f.c.GetTime()
	f.mu.Unlock()
	if err != nil {
		return ptp.Reading{Reason: f.name + ": " + err.Error()}, nil
	}
	e, l := tt.Earliest.UnixNano(), tt.Latest.UnixNano()
	return ptp.Reading{Earliest: e, Latest: l, State: ptp.StateSynchronized,
		Reason: fmt.Sprintf("%s: window %v", f.name, (tt.Latest.Sub(tt.Earliest)))}, nil
}

// Close releases fbclock's shared memory.
func (f *FBClock) Close() error { return f.c.Close() }
