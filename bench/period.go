package bench

import (
	"cmp"
	"slices"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
)

// Result is what the run observed.
type Result struct {
	Config   Config
	Releases []edge.Report // every edge's release reports
	Periods  []Period
	// Receivers' counters, by receiver.
	Stats []receiver.Stats
	// CPU is the process's CPU time (user+system) while periods ran.
	CPU time.Duration
}

// Period is one key period as every receiver saw it.
type Period struct {
	Number    uint64
	ReleaseAt int64 // TAI ns
	// Arrival holds each receiver's kernel arrival time of the first valid
	// RELEASE (TAI ns), 0 if it got no event.
	Arrival []int64
	// Opened holds when each receiver had the keys (TAI ns, user space).
	Opened []int64
	// KeysOK reports per receiver whether the delivered keys were the
	// origin's.
	KeysOK []bool
}

// Missing counts receivers without an event for p.
func (p Period) Missing() int { return countIf(p.Arrival, func(a int64) bool { return a == 0 }) }

// Early counts arrivals before releaseAt: the property that must be 0.
func (p Period) Early() int {
	return countIf(p.Arrival, func(a int64) bool { return a != 0 && a < p.ReleaseAt })
}

// Skew is max − min arrival across the receivers that got the period.
func (p Period) Skew() time.Duration { return spread(p.Arrival) }

// OpenSkew is max − min user-space delivery time across receivers.
func (p Period) OpenSkew() time.Duration { return spread(p.Opened) }

// Lateness returns arrival − releaseAt for every receiver that got p.
func (p Period) Lateness() []time.Duration {
	var out []time.Duration
	for _, a := range p.Arrival {
		if a != 0 {
			out = append(out, time.Duration(a-p.ReleaseAt))
		}
	}
	return out
}

// Percentile returns the p-th percentile (nearest rank) of sorted, or the
// zero value if it is empty.
func Percentile[T cmp.Ordered](sorted []T, p int) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func countIf(xs []int64, f func(int64) bool) int {
	n := 0
	for _, x := range xs {
		if f(x) {
			n++
		}
	}
	return n
}

func spread(xs []int64) time.Duration {
	var lo, hi int64
	for _, x := range xs {
		if x == 0 {
			continue
		}
		if lo == 0 || x < lo {
			lo = x
		}
		hi = max(hi, x)
	}
	return time.Duration(hi - lo)
}

func (p Period) clone() Period {
	p.Arrival, p.Opened, p.KeysOK = slices.Clone(p.Arrival), slices.Clone(p.Opened), slices.Clone(p.KeysOK)
	return p
}

// WrongKeys counts receivers that delivered keys other than the origin's.
func (p Period) WrongKeys() int {
	n := 0
	for i, ok := range p.KeysOK {
		if p.Arrival[i] != 0 && !ok {
			n++
		}
	}
	return n
}
