package bench_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/internal/realtime"
)

// BenchmarkRelease releases periods to 100 and 1,000 receiver sockets, on
// loopback and (as root) across 50 network namespaces, and reports per run:
//
//   - send-late-µs: the edge's first RELEASE send past releaseAt by its
//     clock's earliest bound (median over periods);
//   - kskew-ms: kernel arrival skew, max − min across receivers (median and
//     max over periods);
//   - dskew-ms: user-space delivery skew (keys ready), the same way;
//   - cpu-µs/rx-period: process CPU per receiver per period (includes the
//     edge, which is small beside 1,000 receivers).
//
// It fails if any receiver misses a period or any arrival precedes
// releaseAt. Run with -benchtime=Nx; each iteration is one run of 4 periods.
func BenchmarkRelease(b *testing.B) {
	realtime.Exclusive(b)
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("loopback/receivers=%d", n), func(b *testing.B) {
			g := udp.Loopback
			g.Addr = netip.AddrPortFrom(g.Addr.Addr(), uint16(41000+n))
			benchRelease(b, bench.Config{
				Receivers: n,
				Sender:    func(int) (edge.Sender, error) { return udp.NewSender(g) },
				Listen:    func(int) (receiver.Source, error) { return udp.Listen(g) },
			})
		})
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("netns/receivers=%d", n), func(b *testing.B) {
			const hosts = 50
			lab := netnstest.New(b, hosts+1)
			perHost := (n + hosts - 1) / hosts
			group := func(h *netns.Host) udp.Group {
				return udp.Group{Addr: netip.MustParseAddrPort("239.77.0.2:7171"), Interface: h.Ifname, Hops: 1}
			}
			cfg := bench.Config{Receivers: n}
			onLab(&cfg, lab, group, 1, func(i int) int { return 1 + i/perHost })
			benchRelease(b, cfg)
		})
	}
}

func benchRelease(b *testing.B, cfg bench.Config) {
	cfg.Periods = 4
	var late, kskew, dskew []time.Duration
	var cpu time.Duration
	periods := 0
	for b.Loop() {
		res, err := bench.Run(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range res.Periods {
			if m, e := p.Missing(), p.Early(); m > 0 || e > 0 {
				b.Fatalf("period %d: %d receivers missed it, %d arrivals early", p.Number, m, e)
			}
			kskew = append(kskew, p.Skew())
			dskew = append(dskew, p.OpenSkew())
		}
		for _, r := range res.Releases {
			late = append(late, r.Lateness)
		}
		cpu += res.CPU
		periods += len(res.Periods)
	}
	b.ReportMetric(ms(median(kskew)), "kskew-ms")
	b.ReportMetric(ms(slices.Max(kskew)), "kskew-max-ms")
	b.ReportMetric(ms(median(dskew)), "dskew-ms")
	b.ReportMetric(ms(slices.Max(dskew)), "dskew-max-ms")
	b.ReportMetric(float64(median(late))/1e3, "send-late-µs")
	b.ReportMetric(float64(cpu)/1e3/float64(periods*cfg.Receivers), "cpu-µs/rx-period")
	b.ReportMetric(0, "ns/op")
}

func median(xs []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(xs))
	return bench.Percentile(s, 50)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
