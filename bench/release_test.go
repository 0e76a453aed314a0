package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/internal/realtime"
)

// TestMain lets MeasureRelease re-run this test binary as a subscriber
// process.
func TestMain(m *testing.M) {
	bench.ServeSubscribers()
	os.Exit(m.Run())
}

// TestRelease releases a resource once with every variant to subscribers
// in two other processes, and checks that every subscriber got it byte
// for byte, embargo's never early, and that the figures hang together.
func TestRelease(t *testing.T) {
	realtime.Exclusive(t)
	const n = 40
	resource := []byte("the same small resource, released at releaseAt")
	var runs []bench.Release
	for _, v := range bench.ReleaseVariants {
		t.Run(v, func(t *testing.T) {
			// One variant's sender side is profiled, as -cpuprofile does.
			var prof bytes.Buffer
			cfg := bench.ReleaseConfig{Variant: v, Subscribers: n, Procs: 2, Resource: resource}
			if v == bench.BrowserWebTransport {
				cfg.CPUProfile = &prof
			}
			r, err := bench.MeasureRelease(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.CPUProfile != nil && !bytes.HasPrefix(prof.Bytes(), []byte{0x1f, 0x8b}) {
				t.Errorf("the CPU profile is %d bytes, not a gzipped pprof profile", prof.Len())
			}
			runs = append(runs, r)
			if r.Subscribers != n || r.Delivered != n || r.Corrupt != 0 {
				t.Fatalf("%d subscribers, %d got the resource, %d got other bytes; want %d, %d, 0", r.Subscribers, r.Delivered, r.Corrupt, n, n)
			}
			if (strings.HasPrefix(v, "embargo") || strings.HasPrefix(v, "browser")) && r.Early != 0 {
				t.Errorf("%d subscribers had embargo's resource before releaseAt", r.Early)
			}
			if !(r.Last >= r.First && r.SkewMax >= r.SkewP99 && r.SkewP99 >= r.SkewP50 && r.SkewP50 >= 0 && r.Last-r.First == r.SkewMax) {
				t.Errorf("inconsistent figures: first %v last %v skew p50 %v p99 %v max %v", r.First, r.Last, r.SkewP50, r.SkewP99, r.SkewMax)
			}
			// Every subscriber reads through a socket that keeps the
			// kernel's receive stamps (a browser's: its WebSocket's TCP
			// connection, or its WebTransport session's UDP socket).
			if runtime.GOOS == "linux" && (r.KernelLast <= 0 || r.KernelLast > r.Last) {
				t.Errorf("the last kernel receive stamp %v after releaseAt, not in (0, last %v]", r.KernelLast, r.Last)
			}
			if r.PublishLate < 0 || r.SubPeakRSS <= 0 || !strings.Contains(r.Placement, "separate processes") {
				t.Errorf("sender figures: publish lateness %v, subscriber peak RSS %d, placement %q", r.PublishLate, r.SubPeakRSS, r.Placement)
			}
		})
	}
	var out bytes.Buffer
	bench.WriteReleaseTable(&out, runs)
	rows := 0
	for l := range strings.Lines(out.String()) {
		if strings.HasPrefix(l, "embargo-") && strings.Contains(l, " ÷ ") {
			rows++
		}
	}
	// The browser variants sit on the peers' side: unicast ÷ each of them.
	if len(runs) == len(bench.ReleaseVariants) && rows != 8 {
		t.Errorf("want 8 ratio rows (2 embargo variants × 2 browser variants and 2 peers):\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}

// BenchmarkPeers releases a resource once per iteration to 1,000 and
// 10,000 subscribers in four other processes, through each release
// variant, and reports the medians over iterations of:
//
//   - last-ms: the last subscriber's receive − releaseAt;
//   - skew-p99-ms: the 99th percentile of receive − first receive;
//   - cpu-ms: the sender process's CPU, sub-cpu-ms the subscribers';
//   - send-B/sub, recv-B/sub: memory per subscriber on each side.
//
// It fails if a subscriber misses the resource or gets other bytes, or
// embargo's arrives before releaseAt. `embargo bench -peers` prints the
// same figures with the ratios embargo ÷ peer.
func BenchmarkPeers(b *testing.B) {
	realtime.Exclusive(b)
	for _, n := range []int{1000, 10000} {
		for _, v := range bench.ReleaseVariants {
			b.Run(fmt.Sprintf("subscribers=%d/variant=%s", n, v), func(b *testing.B) {
				var runs []bench.Release
				for b.Loop() {
					r, err := bench.MeasureRelease(context.Background(), bench.ReleaseConfig{Variant: v, Subscribers: n})
					if err != nil {
						b.Fatal(err)
					}
					if r.Delivered != n || (strings.HasPrefix(v, "embargo") && r.Early > 0) {
						b.Fatalf("%d of %d subscribers got the resource (%d other bytes), %d early", r.Delivered, n, r.Corrupt, r.Early)
					}
					runs = append(runs, r)
				}
				med := func(f func(bench.Release) int64) float64 {
					xs := make([]int64, len(runs))
					for i, r := range runs {
						xs[i] = f(r)
					}
					slices.Sort(xs)
					return float64(bench.Percentile(xs, 50))
				}
				b.ReportMetric(med(func(r bench.Release) int64 { return int64(r.Last) })/1e6, "last-ms")
				b.ReportMetric(med(func(r bench.Release) int64 { return int64(r.SkewP99) })/1e6, "skew-p99-ms")
				b.ReportMetric(med(func(r bench.Release) int64 { return int64(r.CPU) })/1e6, "cpu-ms")
				b.ReportMetric(med(func(r bench.Release) int64 { return int64(r.SubCPU) })/1e6, "sub-cpu-ms")
				b.ReportMetric(med(func(r bench.Release) int64 { return r.SendMemPerSub }), "send-B/sub")
				b.ReportMetric(med(func(r bench.Release) int64 { return r.RecvMemPerSub }), "recv-B/sub")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
