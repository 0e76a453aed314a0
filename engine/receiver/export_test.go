package receiver

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
