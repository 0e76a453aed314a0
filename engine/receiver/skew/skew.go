// Package skew is the arrival-skew histogram embargo reports everywhere:
// arrival time minus releaseAt, in fixed buckets of 1 µs near zero and 25 %
// relative width up to 16.8 s. The kernel program in package bpf computes
// the same buckets, so kernel and user-space histograms compare bucket for
// bucket. It has no dependencies, so receivers link it freely.
package skew

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"
)

// Bucket layout of the arrival-skew histogram, shared by the kernel program
// (builder.bucket in bpf/program_linux.go) and Bucket below; TestBucketAgreesWithKernel
// holds them together. Skew is measured in whole microseconds (truncated), so
// that every bucket edge is a round number a person can read:
//
//	0            early: skew < 0 (the kernel saw it before releaseAt)
//	1 … 16       [u, u+1) µs for u = 0 … 15: 1 µs resolution near zero,
//	             where a healthy LAN or loopback lands
//	17 … 96      20 octaves [16·2^k, 32·2^k) µs, k = 0 … 19, each cut into
//	             4 equal sub-buckets: relative resolution ≤ 25 % up to
//	             16.78 s, which covers the 200 ms objective with room
//	97           overflow: skew ≥ 2^24 µs (16.777216 s)
const (
	LinearBuckets = 16 // 1 µs buckets before the first octave
	SubBuckets    = 4  // sub-buckets per octave; a power of two
	SubBits       = 2  // log2(SubBuckets)
	Octaves       = 20
	FirstOctave   = 4 // log2(LinearBuckets): the first octave starts at 2^4 µs
	OverflowMicro = LinearBuckets << Octaves

	// NumBuckets is the number of histogram buckets.
	NumBuckets = 1 + LinearBuckets + Octaves*SubBuckets + 1
	// OverflowBucket is the index of the last, open-ended bucket.
	OverflowBucket = NumBuckets - 1
)

// Bucket returns the histogram bucket of an arrival skew d (arrival minus
// releaseAt): 0 for early arrivals, NumBuckets−1 for d ≥ 16.777216 s. It is
// the function the kernel program computes, so a user-space histogram fed
// with SO_TIMESTAMPNS stamps is comparable bucket for bucket.
func Bucket(d time.Duration) int {
	if d < 0 {
		return 0
	}
	us := uint64(d) / uint64(time.Microsecond)
	if us < LinearBuckets {
		return 1 + int(us)
	}
	if us >= OverflowMicro {
		return OverflowBucket
	}
	msb := bits.Len64(us) - 1 // FirstOctave … FirstOctave+Octaves−1
	sub := int(us>>(msb-SubBits)) & (SubBuckets - 1)
	return 1 + LinearBuckets + SubBuckets*(msb-FirstOctave) + sub
}

// BucketBounds returns the half-open interval [lo, hi) of skews that Bucket
// maps to i. The early bucket's lo is math.MinInt64 and the overflow bucket's
// hi is math.MaxInt64. It panics if i is not in [0, NumBuckets).
func BucketBounds(i int) (lo, hi time.Duration) {
	switch {
	case i < 0 || i >= NumBuckets:
		panic(fmt.Sprintf("skew: bucket %d out of range [0, %d)", i, NumBuckets))
	case i == 0:
		return math.MinInt64, 0
	case i <= LinearBuckets:
		return time.Duration(i-1) * time.Microsecond, time.Duration(i) * time.Microsecond
	case i == OverflowBucket:
		return OverflowMicro * time.Microsecond, math.MaxInt64
	}
	j := i - 1 - LinearBuckets
	k, sub := j/SubBuckets, j%SubBuckets
	width := time.Duration(1) << (k + FirstOctave - SubBits) * time.Microsecond
	lo = time.Duration(LinearBuckets)<<k*time.Microsecond + time.Duration(sub)*width
	return lo, lo + width
}

// Histogram counts arrival skews in the buckets of Bucket. The zero value is
// an empty histogram; Counts has NumBuckets entries once anything was added.
// A Histogram is not safe for concurrent use.
type Histogram struct {
	Counts []uint64
}

// grow makes Counts long enough to index every bucket.
func (h *Histogram) grow() {
	if len(h.Counts) < NumBuckets {
		h.Counts = append(h.Counts, make([]uint64, NumBuckets-len(h.Counts))...)
	}
}

// Add counts one skew. This is also the user-space fallback: a receiver
// without BPF adds (SO_TIMESTAMPNS stamp converted to TAI) − releaseAt for
// the first RELEASE of each period, skipping CATCH-UP ones, as the kernel
// program does.
func (h *Histogram) Add(d time.Duration) {
	h.grow()
	h.Counts[Bucket(d)]++
}

// Merge adds o's counts to h, for summing receivers or edges.
func (h *Histogram) Merge(o Histogram) {
	h.grow()
	for i, c := range o.Counts {
		if i < len(h.Counts) {
			h.Counts[i] += c
		}
	}
}

// Total is the number of skews counted.
func (h Histogram) Total() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Quantile returns an upper bound of the q-quantile (0 ≤ q ≤ 1, clamped):
// the upper edge of the bucket holding it, so "p99 ≤ Quantile(0.99)". For
// the overflow bucket, which has no upper edge, it returns the bucket's lower
// edge; for the early bucket, 0. An empty histogram returns 0.
func (h Histogram) Quantile(q float64) time.Duration {
	total := h.Total()
	if total == 0 {
		return 0
	}
	if !(q >= 0) { // also NaN
		q = 0
	}
	q = min(q, 1)
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		if cum >= rank {
			lo, hi := BucketBounds(i)
			if i == OverflowBucket {
				return lo
			}
			return hi
		}
	}
	return 0 // not reached: cum ends at total
}

// String summarises the histogram in one line, then prints one line per
// non-empty bucket: "[lo, hi) count".
func (h Histogram) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "n=%d p50≤%v p99≤%v max≤%v", h.Total(), h.Quantile(0.5), h.Quantile(0.99), h.Quantile(1))
	for i, c := range h.Counts {
		if c == 0 || i >= NumBuckets {
			continue
		}
		lo, hi := BucketBounds(i)
		switch i {
		case 0:
			fmt.Fprintf(&b, "\n  early     %d", c)
		case OverflowBucket:
			fmt.Fprintf(&b, "\n  ≥%v  %d", lo, c)
		default:
			fmt.Fprintf(&b, "\n  [%v, %v)  %d", lo, hi, c)
		}
	}
	return b.String()
}
