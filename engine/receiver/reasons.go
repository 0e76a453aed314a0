package receiver

// reason is why a datagram or a period was dropped; its string is the
// name in Stats.Drops and in metrics.
type reason uint8

const (
	reasonMalformed         reason = iota // does not decode
	reasonUnexpected                      // a type receivers do not take
	reasonUnsubscribed                    // a stream not in Config.Streams
	reasonDuplicate                       // already held, rebuilt or delivered
	reasonOld                             // below the window, or presentAt past MaxAge
	reasonFuture                          // a RELEASE far beyond the announce lead
	reasonBadProof                        // shard fails its Merkle proof
	reasonForged                          // shard root not signed by a trusted key
	reasonConflict                        // a second, differently signed set for a period
	reasonBusy                            // a memory bound is reached
	reasonBadBody                         // body does not decode, match or open
	reasonBadSignature                    // body signature fails
	reasonWrongRK                         // RELEASE secret does not open the commitment
	reasonReleaseAtMismatch               // RELEASE names another releaseAt (statistics only; still delivered)
	reasonNoMasterKey                     // content keys, but no master key configured
	reasonUnwrap                          // content keys do not unwrap: wrong master key
	numReasons
)

var reasonNames = [numReasons]string{
	reasonMalformed:         "malformed",
	reasonUnexpected:        "unexpected-type",
	reasonUnsubscribed:      "unsubscribed-stream",
	reasonDuplicate:         "duplicate",
	reasonOld:               "old-period",
	reasonFuture:            "future-period",
	reasonBadProof:          "bad-proof",
	reasonForged:            "forged",
	reasonConflict:          "conflict",
	reasonBusy:              "busy",
	reasonBadBody:           "bad-body",
	reasonBadSignature:      "bad-signature",
	reasonWrongRK:           "wrong-rk",
	reasonReleaseAtMismatch: "releaseat-mismatch",
	reasonNoMasterKey:       "no-master-key",
	reasonUnwrap:            "unwrap-failed",
}

// Reasons lists every drop reason name Stats.Drops may hold.
func Reasons() []string { return append([]string(nil), reasonNames[:]...) }

// counters is guarded by Receiver.mu.
type counters struct {
	n         [numReasons]uint64
	delivered uint64
}

func newCounters() *counters { return &counters{} }

func (c *counters) add(r reason) { c.n[r]++ }

func (c *counters) snapshot() map[string]uint64 {
	m := make(map[string]uint64, numReasons)
	for i, v := range c.n {
		if v > 0 {
			m[reasonNames[i]] = v
		}
	}
	return m
}
