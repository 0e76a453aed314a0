package receiver

// HoldShards takes the shard path's lock, as a long signature check would,
// and returns its release: a test seam for "a RELEASE never waits behind a
// signature check".
func HoldShards(r *Receiver) (release func()) {
	r.shardMu.Lock()
	return r.shardMu.Unlock
}
