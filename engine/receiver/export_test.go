package receiver

import (
	"time"

	"github.com/embargo-live/embargo/fec"
)

// HoldShards takes the shard path's lock, as a long signature check would,
// and returns its release: a test seam for "a RELEASE never waits behind a
// signature check".
func HoldShards(r *Receiver) (release func()) {
	r.shardMu.Lock()
	return r.shardMu.Unlock
}

// DeferChecks makes r leave its signature checks due, as if Run's checker
// goroutine were busy, and returns the func that runs them.
func DeferChecks(r *Receiver) (run func()) {
	wake := make(chan struct{}, 1)
	r.checker.Store(&wake)
	return func() {
		r.checker.Store(nil)
		r.runChecks()
	}
}

// SlowChecks makes each of r's shard-root checks take cost first (virtual
// time in a synctest bubble): a receiver starved of CPU. Call it before
// Run.
func SlowChecks(r *Receiver, cost time.Duration) {
	verify := r.verify
	r.verify = func(c fec.Check) error {
		time.Sleep(cost)
		return verify(c)
	}
}
