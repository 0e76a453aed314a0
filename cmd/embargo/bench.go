package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/bpf"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/engine/rig"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", `Run a release scenario several times over real loopback sockets and report what every receiver
saw: delivery ratio, each edge's send lateness and fan-out time, arrival − releaseAt and its
skew (from eBPF kernel stamps where BPF is permitted, else socket stamps), CPU time and the
process's peak memory so far — as a table, and optionally as JSON and benchstat text. -compare runs the unicast
baseline (one sendto per subscriber) and the engine (prepared sendmmsg) in the same invocation.`, stdout)
	mode := fs.String("mode", "mixed", "receivers on multicast, unicast, or mixed (half each)")
	receivers := fs.Int("receivers", 1000, "receivers, each with its own sockets")
	edges := fs.Int("edges", 1, "edges releasing the same schedule")
	offsets := fs.String("offsets", "", "simulated clock offsets per edge, comma-separated (e.g. 0,3ms): each edge's clock reads ahead by it and states a bound that covers it")
	loss := fs.Float64("loss", 0, "probability that a receiver loses any one datagram")
	period := fs.Duration("period", time.Second, "key period length")
	periods := fs.Int("periods", 5, "periods per run")
	runs := fs.Int("runs", 3, "runs per variant")
	compare := fs.Bool("compare", false, "also run the unicast baseline and print engine/baseline ratios")
	jsonPath := fs.String("json", "", "write every run's figures to this file as JSON")
	statPath := fs.String("benchstat", "", "write benchstat-compatible lines to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	share := map[string]float64{"multicast": 0, "unicast": 1, "mixed": 0.5}[*mode]
	if _, ok := map[string]bool{"multicast": true, "unicast": true, "mixed": true}[*mode]; !ok {
		return fmt.Errorf("-mode %q: want multicast, unicast or mixed", *mode)
	}
	if *receivers < 1 || *receivers > 20000 || *edges < 1 || *edges > 8 || *periods < 1 || *runs < 1 || *loss < 0 || *loss >= 1 || *period < 100*time.Millisecond {
		return errors.New("need 1 ≤ receivers ≤ 20000, 1 ≤ edges ≤ 8, periods ≥ 1, runs ≥ 1, 0 ≤ loss < 1, period ≥ 100ms")
	}
	offs, err := parseOffsets(*offsets, *edges)
	if err != nil {
		return err
	}
	if *compare && share == 0 {
		return errors.New("-compare needs unicast receivers (-mode unicast or mixed)")
	}
	clock, err := demoClock(stderr)
	if err != nil {
		return err
	}
	variants := []string{"engine"}
	if *compare {
		variants = []string{"baseline", "engine"}
	}
	if len(offs) > 0 {
		fmt.Fprintf(stdout, "edge clocks: SIMULATED, reading ahead of this host's clock by %v, each with a bound that covers its offset\n", offs)
	}
	perRun := time.Duration(*periods+2)**period + time.Second
	todo := *runs * len(variants)
	start := time.Now()
	var all []benchRun
	for r := range *runs {
		for _, v := range variants {
			if ctx.Err() != nil {
				break
			}
			br, err := benchOnce(ctx, benchSpec{variant: v, mode: *mode, receivers: *receivers, unicast: int(float64(*receivers)*share + 0.5),
				edges: *edges, offsets: offs, loss: *loss, period: *period, periods: *periods, seed: uint64(r + 1)}, clock)
			if err != nil {
				return err
			}
			all = append(all, br)
			left := time.Duration(todo-len(all)) * perRun
			fmt.Fprintf(stderr, "bench: run %d/%d %s done (%v so far, about %v to go)\n", r+1, *runs, v, time.Since(start).Round(time.Second), left.Round(time.Second))
		}
	}
	printBenchTable(stdout, all, variants)
	if *jsonPath != "" {
		data, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(*jsonPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *statPath != "" {
		var b strings.Builder
		for _, r := range all {
			b.WriteString(r.benchstat())
		}
		if err := os.WriteFile(*statPath, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

type benchSpec struct {
	variant, mode             string
	receivers, unicast, edges int
	offsets                   []time.Duration
	loss                      float64
	period                    time.Duration
	periods                   int
	seed                      uint64
}

// benchRun is one run's figures (durations in ns in JSON).
type benchRun struct {
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
}

func benchOnce(ctx context.Context, s benchSpec, clock ptp.Clock) (benchRun, error) {
	g := udp.Loopback
	var filter *bpf.Filter
	stamps := "socket"
	if bpf.Available() == nil {
		if f, err := bpf.NewFilter(bpf.WithLoss(s.loss)); err == nil {
			sys, _ := clock.(*ptp.System)
			if sys != nil && f.SetTAIOffset(time.Duration(sys.TAIOffset())) == nil {
				filter, stamps = f, "kernel (eBPF)"
				defer f.Close()
			} else {
				f.Close()
			}
		}
	}
	cfg := rig.Config{
		Receivers: s.receivers, Unicast: s.unicast, Edges: s.edges, Periods: s.periods, Period: s.period,
		Lead: s.period * 8 / 10, Repeat: 5, Clock: clock, UnicastNaive: s.variant == "baseline",
		Sender: func(int) (edge.Sender, error) { return udp.NewSender(g) },
		Listen: func(int) (receiver.Source, error) { return udp.Listen(g) },
	}
	if filter != nil {
		cfg.Filter = filter // loss, if any, is injected in the kernel
	} else if s.loss > 0 {
		return benchRun{}, errors.New("-loss needs the eBPF loss injector (root)")
	}
	if len(s.offsets) > 0 {
		cfg.EdgeClock = func(i int) ptp.Clock {
			o := s.offsets[i]
			bound := max(o, -o) + time.Millisecond
			return ptp.NewSim(ptp.WithOffset(o), ptp.WithUncertainty(bound, 0))
		}
	}
	res, err := rig.Run(ctx, cfg)
	if err != nil && (res == nil || ctx.Err() == nil) {
		return benchRun{}, err
	}
	r := benchRun{Variant: s.variant, Receivers: s.receivers, Unicast: s.unicast, Edges: s.edges, Stamps: stamps, CPU: res.CPU}
	r.Name = fmt.Sprintf("BenchmarkEmbargo/mode=%s/receivers=%d/edges=%d/sender=%s", s.mode, s.receivers, s.edges, s.variant)
	var late, fan, skews []time.Duration
	for _, rep := range res.Releases {
		late = append(late, rep.Lateness)
		fan = append(fan, rep.FanOut)
	}
	var h skew.Histogram
	delivered := 0
	for _, p := range res.Periods {
		delivered += s.receivers - p.Missing()
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
	r.Delivered = float64(delivered) / float64(s.receivers*len(res.Periods))
	r.LateP50, r.LateMax = rig.Percentile(late, 50), rig.Percentile(late, 100)
	r.FanOutP50 = rig.Percentile(fan, 50)
	if r.FanOutP50 > 0 && s.unicast > 0 {
		r.Rate = float64(s.unicast) / r.FanOutP50.Seconds()
	}
	r.ArrP50, r.ArrP99, r.ArrMax = h.Quantile(0.5), h.Quantile(0.99), h.Quantile(1)
	r.SkewP50 = rig.Percentile(skews, 50)
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		r.ProcessPeakRSS = ru.Maxrss * 1024
	}
	return r, nil
}

func (r benchRun) benchstat() string {
	return fmt.Sprintf("%s 1 %d fanout-ns %.0f datagrams/s %d send-late-ns %d arrival-p99-ns %d skew-ns %.6f delivered %d cpu-ns\n",
		r.Name, r.FanOutP50, r.Rate, r.LateP50, r.ArrP99, r.SkewP50, r.Delivered, r.CPU)
}

func printBenchTable(w io.Writer, runs []benchRun, variants []string) {
	fmt.Fprintf(w, "%-9s %9s %9s %12s %12s %12s %11s %11s %11s %11s %10s %9s  %s\n",
		"sender", "delivered", "early", "send-late", "fan-out", "datagrams/s", "arr-p50≤", "arr-p99≤", "arr-max≤", "skew-p50", "cpu", "peak-MiB", "stamps")
	for _, r := range runs {
		fmt.Fprintf(w, "%-9s %9.4f %9d %12v %12v %12.0f %11v %11v %11v %11v %10v %9d  %s\n",
			r.Variant, r.Delivered, r.Early, r.LateP50, r.FanOutP50.Round(time.Microsecond), r.Rate, r.ArrP50, r.ArrP99, r.ArrMax,
			r.SkewP50.Round(time.Microsecond), r.CPU.Round(time.Millisecond), r.ProcessPeakRSS>>20, r.Stamps)
	}
	if len(variants) == 2 {
		med := func(v string, f func(benchRun) float64) float64 {
			var xs []float64
			for _, r := range runs {
				if r.Variant == v {
					xs = append(xs, f(r))
				}
			}
			slices.Sort(xs)
			return rig.Percentile(xs, 50)
		}
		fan := func(r benchRun) float64 { return float64(r.FanOutP50) }
		rate := func(r benchRun) float64 { return r.Rate }
		skw := func(r benchRun) float64 { return float64(r.SkewP50) }
		fmt.Fprintf(w, "engine/baseline, medians of runs: fan-out time %.2f×, datagrams/s %.2f×, skew %.2f×\n",
			med("engine", fan)/med("baseline", fan), med("engine", rate)/med("baseline", rate), med("engine", skw)/med("baseline", skw))
	}
}

func parseOffsets(s string, edges int) ([]time.Duration, error) {
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
