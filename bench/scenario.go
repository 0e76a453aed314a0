package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/embargo-live/embargo/bpf"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
)

// Scenario is one release scenario: who receives how, from how many edges
// on which clocks, with what loss.
type Scenario struct {
	Variant   string // "engine" or "baseline" (one sendto per unicast subscriber)
	Mode      string // "multicast", "unicast" or "mixed": named in the benchmark name
	Receivers int
	Unicast   int             // how many of the receivers subscribe by unicast to every edge
	Edges     int             // edges releasing the same schedule
	Offsets   []time.Duration // simulated clock offset per edge (none: every edge on Clock)
	// Clocks, if set, gives each edge its own real clock (one per edge;
	// not with Offsets), e.g. DaemonClocks': the run then measures the
	// edges' send skew against the sum of their stated bounds (EdgeSkew).
	Clocks  []SourceClock
	Loss    float64 // probability a receiver loses any one datagram (needs the eBPF injector)
	Period  time.Duration
	Periods int
}

// Variants of a Scenario.
const (
	VariantEngine   = "engine"
	VariantBaseline = "baseline"
)

// Measurement is one run's figures (durations in ns in JSON).
type Measurement struct {
	Name      string        `json:"name"`
	Variant   string        `json:"variant"`
	Receivers int           `json:"receivers"`
	Unicast   int           `json:"unicastReceivers"`
	Edges     int           `json:"edges"`
	Delivered float64       `json:"deliveredRatio"`
	Early     int           `json:"early"`
	LateP50   time.Duration `json:"sendLatenessP50Ns"`
	LateMax   time.Duration `json:"sendLatenessMaxNs"`
	FanOutP50 time.Duration `json:"fanOutP50Ns"` // first RELEASE copy to every subscriber
	Rate      float64       `json:"fanOutDatagramsPerSec"`
	ArrP50    time.Duration `json:"arrivalP50Ns"` // arrival − releaseAt, bucket bounds
	ArrP99    time.Duration `json:"arrivalP99Ns"`
	ArrMax    time.Duration `json:"arrivalMaxNs"`
	SkewP50   time.Duration `json:"skewP50Ns"` // max − min arrival per period
	Stamps    string        `json:"stamps"`    // "kernel (eBPF)" or "socket"
	CPU       time.Duration `json:"cpuNs"`
	// ProcessPeakRSS is the process's peak resident memory so far (the
	// kernel keeps no per-run peak): a later run inherits an earlier one's.
	ProcessPeakRSS int64 `json:"processPeakRssBytes"`
	// EdgeSkew is set when the edges ran on Scenario.Clocks.
	EdgeSkew *EdgeSkew `json:"edgeSkew,omitempty"`
}

// Measure runs s once on loopback with every role on clock and sums it up.
// Arrival figures come from the eBPF filter's kernel stamps where BPF is
// permitted, else from socket stamps; loss needs the filter.
func Measure(ctx context.Context, s Scenario, clock ptp.Clock) (Measurement, error) {
	g := udp.Loopback
	var filter *bpf.Filter
	stamps := "socket"
	if bpf.Available() == nil {
		if f, err := bpf.NewFilter(bpf.WithLoss(s.Loss)); err == nil {
			sys, _ := clock.(*ptp.System)
			if sys != nil && f.SetTAIOffset(sys.TAIOffset()) == nil {
				filter, stamps = f, "kernel (eBPF)"
				defer f.Close()
			} else {
				f.Close()
			}
		}
	}
	cfg := Config{
		Receivers: s.Receivers, Unicast: s.Unicast, Edges: s.Edges, Periods: s.Periods, Period: s.Period,
		Lead: s.Period * 8 / 10, Repeat: 5, Clock: clock, UnicastNaive: s.Variant == VariantBaseline,
		Sender: func(int) (edge.Sender, error) { return udp.NewSender(g) },
		Listen: func(int) (receiver.Source, error) { return udp.Listen(g) },
	}
	if filter != nil {
		cfg.Filter = filter // loss, if any, is injected in the kernel
	} else if s.Loss > 0 {
		return Measurement{}, errors.New("-loss needs the eBPF loss injector (root)")
	}
	var sends *firstSends
	if len(s.Clocks) > 0 {
		if len(s.Clocks) != s.Edges || len(s.Offsets) > 0 {
			return Measurement{}, fmt.Errorf("bench: %d edge clocks for %d edges (and no offsets with them)", len(s.Clocks), s.Edges)
		}
		sends = newFirstSends(s.Edges)
		cfg.EdgeClock = func(i int) ptp.Clock { return s.Clocks[i].Clock }
		cfg.Sender = func(i int) (edge.Sender, error) {
			snd, err := udp.NewSender(g)
			if err != nil {
				return nil, err
			}
			return sends.wrap(i, snd), nil
		}
	}
	if len(s.Offsets) > 0 {
		cfg.EdgeClock = func(i int) ptp.Clock {
			o := s.Offsets[i]
			bound := max(o, -o) + time.Millisecond
			return ptp.NewSim(ptp.WithOffset(o), ptp.WithUncertainty(bound, 0))
		}
	}
	res, err := Run(ctx, cfg)
	if err != nil && (res == nil || ctx.Err() == nil) {
		return Measurement{}, err
	}
	r := Measurement{Variant: s.Variant, Receivers: s.Receivers, Unicast: s.Unicast, Edges: s.Edges, Stamps: stamps, CPU: res.CPU}
	r.Name = fmt.Sprintf("BenchmarkEmbargo/mode=%s/receivers=%d/edges=%d/sender=%s", s.Mode, s.Receivers, s.Edges, s.Variant)
	if sends != nil {
		r.Name += "/clocks=daemons"
		names := make([]string, len(s.Clocks))
		for i, c := range s.Clocks {
			names[i] = c.Name
		}
		r.EdgeSkew = edgeSkew(names, sends, res.Releases)
	}
	var late, fan, skews []time.Duration
	for _, rep := range res.Releases {
		late = append(late, rep.Lateness)
		fan = append(fan, rep.FanOut)
	}
	var h skew.Histogram
	delivered := 0
	for _, p := range res.Periods {
		delivered += s.Receivers - p.Missing()
		r.Early += p.Early()
		skews = append(skews, p.Skew())
		for _, d := range p.Lateness() {
			h.Add(d)
		}
	}
	if filter != nil {
		if kh, err := filter.Histogram(); err == nil && kh.Total() > 0 {
			h = kh
		}
	}
	slices.Sort(late)
	slices.Sort(fan)
	slices.Sort(skews)
	r.Delivered = float64(delivered) / float64(s.Receivers*len(res.Periods))
	r.LateP50, r.LateMax = Percentile(late, 50), Percentile(late, 100)
	r.FanOutP50 = Percentile(fan, 50)
	if r.FanOutP50 > 0 && s.Unicast > 0 {
		r.Rate = float64(s.Unicast) / r.FanOutP50.Seconds()
	}
	r.ArrP50, r.ArrP99, r.ArrMax = h.Quantile(0.5), h.Quantile(0.99), h.Quantile(1)
	r.SkewP50 = Percentile(skews, 50)
	r.ProcessPeakRSS = peakRSS()
	return r, nil
}

// Benchstat is the measurement as one benchstat-compatible line.
func (r Measurement) Benchstat() string {
	return fmt.Sprintf("%s 1 %d fanout-ns %.0f datagrams/s %d send-late-ns %d arrival-p99-ns %d skew-ns %.6f delivered %d cpu-ns\n",
		r.Name, r.FanOutP50, r.Rate, r.LateP50, r.ArrP99, r.SkewP50, r.Delivered, r.CPU)
}

// WriteTable writes one row per measurement and, when variants are the
// baseline and the engine, the engine/baseline ratios of their medians.
func WriteTable(w io.Writer, runs []Measurement, variants []string) {
	fmt.Fprintf(w, "%-9s %9s %9s %12s %12s %12s %11s %11s %11s %11s %10s %9s  %s\n",
		"sender", "delivered", "early", "send-late", "fan-out", "datagrams/s", "arr-p50≤", "arr-p99≤", "arr-max≤", "skew-p50", "cpu", "peak-MiB", "stamps")
	for _, r := range runs {
		fmt.Fprintf(w, "%-9s %9.4f %9d %12v %12v %12.0f %11v %11v %11v %11v %10v %9d  %s\n",
			r.Variant, r.Delivered, r.Early, r.LateP50, r.FanOutP50.Round(time.Microsecond), r.Rate, r.ArrP50, r.ArrP99, r.ArrMax,
			r.SkewP50.Round(time.Microsecond), r.CPU.Round(time.Millisecond), r.ProcessPeakRSS>>20, r.Stamps)
	}
	for i, r := range runs {
		if r.EdgeSkew != nil {
			fmt.Fprintf(w, "run %d: %v\n", i+1, r.EdgeSkew)
		}
	}
	if len(variants) == 2 {
		med := func(v string, f func(Measurement) float64) float64 {
			var xs []float64
			for _, r := range runs {
				if r.Variant == v {
					xs = append(xs, f(r))
				}
			}
			slices.Sort(xs)
			return Percentile(xs, 50)
		}
		fan := func(r Measurement) float64 { return float64(r.FanOutP50) }
		rate := func(r Measurement) float64 { return r.Rate }
		skw := func(r Measurement) float64 { return float64(r.SkewP50) }
		fmt.Fprintf(w, "engine/baseline, medians of runs: fan-out time %.2f×, datagrams/s %.2f×, skew %.2f×\n",
			med(VariantEngine, fan)/med(VariantBaseline, fan), med(VariantEngine, rate)/med(VariantBaseline, rate), med(VariantEngine, skw)/med(VariantBaseline, skw))
	}
}

// ParseOffsets parses comma-separated per-edge clock offsets ("0,3ms"),
// one for each of edges; "" is none.
func ParseOffsets(s string, edges int) ([]time.Duration, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != edges {
		return nil, fmt.Errorf("-offsets: %d values for %d edges", len(parts), edges)
	}
	out := make([]time.Duration, len(parts))
	for i, p := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("-offsets: %w", err)
		}
		out[i] = d
	}
	return out, nil
}
