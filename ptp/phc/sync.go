package phc

import (
	"sync/atomic"
	"time"
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
