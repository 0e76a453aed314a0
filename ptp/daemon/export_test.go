package daemon

import "time"

// DaemonEstimate returns the daemon's own bound of the answer s rests on
// and the stated drift, for the real-daemon tests (package daemon_test).
func DaemonEstimate(s *Source) (time.Duration, float64) {
	return s.snap.Load().bound, s.cfg.driftPPM
}

// Widen is widen, for package daemon_test.
var Widen = widen
