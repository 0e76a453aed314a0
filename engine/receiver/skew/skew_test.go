package skew

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBucketLayout(t *testing.T) {
	const us = time.Microsecond
	tests := []struct {
		d    time.Duration
		want int
	}{
		{math.MinInt64, 0},
		{-1, 0},
		{0, 1},
		{999, 1},
		{1 * us, 2},
		{15*us + 999, 16},
		{16 * us, 17},
		{20*us - 1, 17},
		{20 * us, 18},
		{31*us + 999, 20},
		{32 * us, 21}, // second octave: 8 µs wide
		{40 * us, 22},
		{time.Millisecond, 1 + 16 + 4*5 + 3}, // 1000 µs: octave [512, 1024), last quarter
		{200 * time.Millisecond, 1 + 16 + 4*13 + 2},
		{16777215 * us, OverflowBucket - 1},
		{16777216 * us, OverflowBucket},
		{math.MaxInt64, OverflowBucket},
	}
	for _, tt := range tests {
		if got := Bucket(tt.d); got != tt.want {
			t.Errorf("Bucket(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	if NumBuckets != 98 {
		t.Errorf("NumBuckets = %d; the layout doc says 98", NumBuckets)
	}
}

// TestBucketBounds checks that the buckets tile the whole int64 range in
// order and that Bucket agrees with BucketBounds at every edge.
func TestBucketBounds(t *testing.T) {
	var prevHi time.Duration = math.MinInt64
	for i := range NumBuckets {
		lo, hi := BucketBounds(i)
		if lo != prevHi || lo >= hi {
			t.Fatalf("bucket %d: [%v, %v) does not follow %v", i, lo, hi, prevHi)
		}
		prevHi = hi
		for _, d := range []time.Duration{lo, hi - 1} {
			if got := Bucket(d); got != i {
				t.Errorf("Bucket(%v) = %d, want %d (bounds [%v, %v))", d, got, i, lo, hi)
			}
		}
		if i > 0 && i < NumBuckets-1 && (hi-lo)*4 > hi && hi-lo > time.Microsecond {
			t.Errorf("bucket %d [%v, %v) wider than a quarter of its upper edge", i, lo, hi)
		}
	}
	if prevHi != math.MaxInt64 {
		t.Errorf("last bucket ends at %v", prevHi)
	}
	for _, i := range []int{-1, NumBuckets} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("BucketBounds(%d) did not panic", i)
				}
			}()
			BucketBounds(i)
		}()
	}
}

func FuzzBucket(f *testing.F) {
	for _, d := range []int64{0, -1, 999, 1000, 16000, 1 << 40, math.MaxInt64, math.MinInt64} {
		f.Add(d, uint64(1))
	}
	f.Fuzz(func(t *testing.T, d int64, step uint64) {
		i := Bucket(time.Duration(d))
		if i < 0 || i >= NumBuckets {
			t.Fatalf("Bucket(%d) = %d out of range", d, i)
		}
		if lo, hi := BucketBounds(i); time.Duration(d) < lo || (time.Duration(d) >= hi && hi != math.MaxInt64) {
			t.Fatalf("Bucket(%d) = %d, bounds [%d, %d)", d, i, lo, hi)
		}
		// Monotonic: a larger skew never lands in a lower bucket.
		if e := d + int64(step>>1); e >= d {
			if j := Bucket(time.Duration(e)); j < i {
				t.Fatalf("Bucket(%d) = %d < Bucket(%d) = %d", e, j, d, i)
			}
		}
	})
}

func TestHistogram(t *testing.T) {
	var h Histogram
	if h.Total() != 0 || h.Quantile(0.5) != 0 {
		t.Fatal("zero Histogram not empty")
	}
	for range 90 {
		h.Add(3500 * time.Nanosecond) // bucket [3 µs, 4 µs)
	}
	for range 9 {
		h.Add(50 * time.Millisecond)
	}
	h.Add(-time.Second)
	if h.Total() != 100 {
		t.Fatalf("Total = %d", h.Total())
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{
		{0, 0}, {math.NaN(), 0}, {0.01, 0}, {0.02, 4 * time.Microsecond}, {0.91, 4 * time.Microsecond},
		{0.92, 57344 * time.Microsecond}, {1, 57344 * time.Microsecond}, {2, 57344 * time.Microsecond},
	} {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	var o Histogram
	o.Add(time.Hour)
	h.Merge(o)
	h.Merge(Histogram{}) // merging nothing is fine
	if h.Total() != 101 || h.Quantile(1) != OverflowMicro*time.Microsecond {
		t.Errorf("after Merge: total %d, max %v", h.Total(), h.Quantile(1))
	}
	s := h.String()
	for _, want := range []string{"n=101", "early     1", "[3µs, 4µs)  90", "≥16.777216s  1"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
}

func TestHistogramAllocs(t *testing.T) {
	var h Histogram
	h.Add(0)
	if n := testing.AllocsPerRun(100, func() { h.Add(time.Millisecond) }); n != 0 {
		t.Errorf("Add allocates %v times", n)
	}
}

func ExampleHistogram() {
	// The user-space fallback: skew = SO_TIMESTAMPNS arrival (as TAI) − releaseAt.
	var h Histogram
	for _, d := range []time.Duration{2 * time.Microsecond, 2500 * time.Nanosecond, 180 * time.Microsecond, 3 * time.Millisecond} {
		h.Add(d)
	}
	fmt.Println(h.Quantile(0.5))
	fmt.Println(h)
	// Output:
	// 3µs
	// n=4 p50≤3µs p99≤3.072ms max≤3.072ms
	//   [2µs, 3µs)  2
	//   [160µs, 192µs)  1
	//   [2.56ms, 3.072ms)  1
}
