package receiver

import "sync/atomic"

// reason is why a datagram or a period was dropped; its string is the
// name in Stats.Drops and in metrics.
type reason uint8

const (
	reasonMalformed         reason = iota // does not decode
	reasonUnexpected                      // a type receivers do not take
	reasonUnsubscribed                    // a stream not in Config.Streams
	reasonDuplicate                       // already held, rebuilt or delivered
	reasonOld                             // below the window, or presentAt past MaxAge
	reasonFuture                          // a RELEASE or shard far beyond the announce lead
	reasonBadProof                        // shard fails its Merkle proof
	reasonForged                          // shard root not signed by a trusted key (checked, or an unknown key id)
	reasonForgedRepeat                    // a shard root whose check already failed: not checked again
	reasonOtherRoot                       // not the root the period was started with: not checked
	reasonUnverified                      // root check deferred: the verification budget went to another root
	reasonBusy                            // a memory bound is reached
	reasonBadBody                         // body does not decode, match or open
	reasonBadSignature                    // body signature fails
	reasonWrongRK                         // RELEASE secret does not open the commitment
	reasonReleaseAtMismatch               // RELEASE names another releaseAt (statistics only; still delivered)
	reasonNoMasterKey                     // content keys, but no master key configured
	reasonUnwrap                          // content keys do not unwrap: wrong master key
	reasonForeignSource                   // from an address not in Config.Sources
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
	reasonForgedRepeat:      "forged-repeat",
	reasonOtherRoot:         "other-root",
	reasonUnverified:        "unverified",
	reasonBusy:              "busy",
	reasonBadBody:           "bad-body",
	reasonBadSignature:      "bad-signature",
	reasonWrongRK:           "wrong-rk",
	reasonReleaseAtMismatch: "releaseat-mismatch",
	reasonNoMasterKey:       "no-master-key",
	reasonUnwrap:            "unwrap-failed",
	reasonForeignSource:     "foreign-source",
}

// Reasons lists every drop reason name Stats.Drops may hold.
func Reasons() []string { return append([]string(nil), reasonNames[:]...) }

// counters are atomic: the shard and release paths count without sharing
// a lock.
type counters struct {
	n         [numReasons]atomic.Uint64
	delivered atomic.Uint64
}

func newCounters() *counters { return &counters{} }

func (c *counters) add(r reason) { c.n[r].Add(1) }

func (c *counters) snapshot() map[string]uint64 {
	m := make(map[string]uint64, numReasons)
	for i := range c.n {
		if v := c.n[i].Load(); v > 0 {
			m[reasonNames[i]] = v
		}
	}
	return m
}
