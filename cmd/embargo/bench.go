package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/ptp"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", `Run a release scenario several times over real loopback sockets and report what every receiver
saw: delivery ratio, each edge's send lateness and fan-out time, arrival − releaseAt and its
skew (from eBPF kernel stamps where BPF is permitted, else socket stamps), CPU time and the
process's peak memory so far — as a table, and optionally as JSON and benchstat text. -compare runs the unicast
baseline (one sendto per subscriber) and the engine (prepared sendmmsg) in the same invocation.
-peers instead releases one resource per run through embargo (multicast, unicast, and to browsers
over WebSocket and WebTransport), NATS and a WebSocket broadcast to -receivers subscribers in
-procs other processes, and prints embargo ÷ peer. -clock-daemons (root) runs two edges whose
bounds come from real time daemons in network namespaces — a chronyd -x client and a ptp4l
slave (free_running 1), neither steering this host's clock — and reports the edges' send skew
against the sum of their stated bounds.`, stdout)
	mode := fs.String("mode", "mixed", "receivers on multicast, unicast, or mixed (half each)")
	receivers := fs.Int("receivers", 1000, "receivers, each with its own sockets")
	edges := fs.Int("edges", 1, "edges releasing the same schedule")
	clockDaemons := fs.Bool("clock-daemons", false, "root: edge 0's bound from a chronyd -x client, edge 1's from a ptp4l slave (-S, free_running 1), started in network namespaces; reports send skew across the edges against the sum of their stated bounds (implies -edges 2)")
	offsets := fs.String("offsets", "", "simulated clock offsets per edge, comma-separated (e.g. 0,3ms): each edge's clock reads ahead by it and states a bound that covers it")
	loss := fs.Float64("loss", 0, "probability that a receiver loses any one datagram")
	period := fs.Duration("period", time.Second, "key period length")
	periods := fs.Int("periods", 5, "periods per run")
	runs := fs.Int("runs", 3, "runs per variant")
	compare := fs.Bool("compare", false, "also run the unicast baseline and print engine/baseline ratios")
	peers := fs.Bool("peers", false, "release through embargo, NATS and a WebSocket broadcast to subscribers in other processes, and print embargo ÷ peer")
	procs := fs.Int("procs", 4, "with -peers: subscriber processes")
	lead := fs.Duration("lead", 0, "with -peers: how long before releaseAt the release is scheduled (0: 300ms + 500µs per receiver)")
	only := fs.String("variants", strings.Join(bench.ReleaseVariants, ","), "with -peers: the release variants to run, comma-separated")
	rtPriority := fs.Int("rt-priority", ptp.DefaultPriority, "with -peers: SCHED_FIFO priority of embargo's edge's release, as embargo edge -rt-priority (where the process may); 0: normal priority")
	peersRT := fs.Bool("peers-rt", false, "with -peers: the peers wait and send on a thread at -rt-priority too")
	jsonPath := fs.String("json", "", "write every run's figures to this file as JSON")
	statPath := fs.String("benchstat", "", "write benchstat-compatible lines to this file")
	copies := fs.Int("copies", 1, "with -peers: RELEASE copies embargo's edge sends (2 ms apart; an edge sends 7 by default): unicast and multicast subscribers get each, a browser's session the first (WebTransport: the second too, on its stream)")
	profDir := fs.String("cpuprofile", "", "with -peers: write a CPU profile of the sender side over each run's release (scheduling to the last report) to DIR/VARIANT-SUBSCRIBERS-runN.pprof")
	if err := parse(fs, args); err != nil {
		return err
	}
	share, ok := map[string]float64{"multicast": 0, "unicast": 1, "mixed": 0.5}[*mode]
	if !ok {
		return fmt.Errorf("-mode %q: want multicast, unicast or mixed", *mode)
	}
	maxReceivers := 20000 // in this process
	if *peers {
		maxReceivers = 50000 // in -procs others
	}
	if *receivers < 1 || *receivers > maxReceivers || *edges < 1 || *edges > 8 || *periods < 1 || *runs < 1 || *loss < 0 || *loss >= 1 || *period < 100*time.Millisecond {
		return fmt.Errorf("need 1 ≤ receivers ≤ %d, 1 ≤ edges ≤ 8, periods ≥ 1, runs ≥ 1, 0 ≤ loss < 1, period ≥ 100ms", maxReceivers)
	}
	if !*peers {
		for _, f := range []string{"procs", "lead", "variants", "rt-priority", "peers-rt", "copies", "cpuprofile"} {
			if flagSet(fs, f) {
				return fmt.Errorf("-%s is for -peers runs: add -peers, or drop -%s", f, f)
			}
		}
	}
	if *clockDaemons {
		if *edges != 1 && *edges != 2 || *offsets != "" || *peers {
			return errors.New("-clock-daemons runs 2 edges on their own clocks: drop -edges, -offsets and -peers")
		}
		*edges = 2
	}
	offs, err := bench.ParseOffsets(*offsets, *edges)
	if err != nil {
		return err
	}
	if *compare && share == 0 {
		return errors.New("-compare needs unicast receivers (-mode unicast or mixed)")
	}
	clock, err := hostClock(stderr)
	if err != nil {
		return err
	}
	if *peers {
		if *procs < 1 || *procs > 64 {
			return errors.New("need 1 ≤ procs ≤ 64")
		}
		if *copies < 1 || *copies > 16 {
			return fmt.Errorf("-copies %d: want 1…16 RELEASE copies", *copies)
		}
		if *rtPriority < 0 || *rtPriority > 99 {
			return fmt.Errorf("-rt-priority %d: want 1…99, or 0 for normal priority", *rtPriority)
		}
		vs := strings.Split(*only, ",")
		for _, v := range vs {
			if !slices.Contains(bench.ReleaseVariants, v) {
				return fmt.Errorf("-variants: %q: want some of %s", v, strings.Join(bench.ReleaseVariants, ","))
			}
		}
		return runPeers(ctx, bench.ReleaseConfig{Subscribers: *receivers, Procs: *procs, Lead: *lead, Clock: clock, Priority: cmp.Or(*rtPriority, -1), PeersRealtime: *peersRT, Copies: *copies}, vs, *runs, *jsonPath, *statPath, *profDir, stdout, stderr)
	}
	variants := []string{bench.VariantEngine}
	if *compare {
		variants = []string{bench.VariantBaseline, bench.VariantEngine}
	}
	if len(offs) > 0 {
		fmt.Fprintf(stdout, "edge clocks: SIMULATED, reading ahead of this host's clock by %v, each with a bound that covers its offset\n", offs)
	}
	var daemonClocks []bench.SourceClock
	if *clockDaemons {
		fmt.Fprintln(stderr, "bench: starting chronyd and ptp4l in network namespaces and waiting for both to synchronize…")
		d, err := bench.StartDaemonClocks(time.Minute)
		if err != nil {
			return fmt.Errorf("-clock-daemons: %w", err)
		}
		defer d.Close()
		daemonClocks = d.Clocks
		fmt.Fprintf(stdout, "edge clocks: edge 0 on %s, edge 1 on %s (chronyd -x and ptp4l free_running 1 in network namespaces, measuring this host's clock, never steering it)\n",
			d.Clocks[0].Name, d.Clocks[1].Name)
	}
	perRun := time.Duration(*periods+2)**period + time.Second
	todo := *runs * len(variants)
	start := time.Now()
	var all []bench.Measurement
	for r := range *runs {
		for _, v := range variants {
			if ctx.Err() != nil {
				break
			}
			m, err := bench.Measure(ctx, bench.Scenario{Variant: v, Mode: *mode, Receivers: *receivers, Unicast: int(float64(*receivers)*share + 0.5),
				Edges: *edges, Offsets: offs, Clocks: daemonClocks, Loss: *loss, Period: *period, Periods: *periods}, clock)
			if err != nil {
				return err
			}
			all = append(all, m)
			left := time.Duration(todo-len(all)) * perRun
			fmt.Fprintf(stderr, "bench: run %d/%d %s done (%v so far, about %v to go)\n", r+1, *runs, v, time.Since(start).Round(time.Second), left.Round(time.Second))
		}
	}
	bench.WriteTable(stdout, all, variants)
	return writeRuns(ctx, all, *jsonPath, *statPath)
}

// runPeers releases through each of variants runs times (each run every
// variant in turn, so that the machine's load falls on all alike)
// and prints each run and the ratios embargo ÷ peer.
func runPeers(ctx context.Context, cfg bench.ReleaseConfig, variants []string, runs int, jsonPath, statPath, profDir string, stdout, stderr io.Writer) error {
	fmt.Fprintf(stdout, "placement: %s (%d of them)\npriority: %s\nload average at start: %s\n", bench.Placement, min(cfg.Procs, cfg.Subscribers), cfg.Priorities(), loadAverage())
	start := time.Now()
	var all []bench.Release
	for r := range runs {
		for _, v := range variants {
			if ctx.Err() != nil {
				break
			}
			cfg.Variant = v
			prof, err := createProfile(profDir, fmt.Sprintf("%s-%d-run%d.pprof", v, cfg.Subscribers, r+1))
			if err != nil {
				return err
			}
			cfg.CPUProfile = nil
			if prof != nil {
				cfg.CPUProfile = prof
			}
			m, err := bench.MeasureRelease(ctx, cfg)
			if prof != nil {
				err = errors.Join(err, prof.Close())
			}
			if err != nil {
				// The runs done are kept: at 50,000 subscribers each took
				// minutes.
				if len(all) > 0 {
					bench.WriteReleaseTable(stdout, all)
					writeRuns(ctx, all, jsonPath, statPath)
				}
				return fmt.Errorf("%s: %w", v, err)
			}
			all = append(all, m)
			fmt.Fprintf(stderr, "bench: run %d/%d %s done (%v so far)\n", r+1, runs, v, time.Since(start).Round(time.Second))
		}
	}
	fmt.Fprintf(stdout, "load average at end: %s\n", loadAverage())
	bench.WriteReleaseTable(stdout, all)
	return writeRuns(ctx, all, jsonPath, statPath)
}

// createProfile creates dir/name for a CPU profile, or returns nil when
// dir is "" (no profiles asked for).
func createProfile(dir, name string) (*os.File, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return f, nil
}

// loadAverage is the machine's 1, 5 and 15-minute load averages, for the
// record of what else ran beside a benchmark ("unknown" off Linux).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// writeRuns writes runs as JSON to jsonPath and as benchstat lines to
// statPath (each if not ""), and reports an interrupted invocation.
func writeRuns[M interface{ Benchstat() string }](ctx context.Context, runs []M, jsonPath, statPath string) error {
	if jsonPath != "" {
		data, _ := json.MarshalIndent(runs, "", "  ")
		if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if statPath != "" {
		var b strings.Builder
		for _, m := range runs {
			b.WriteString(m.Benchstat())
		}
		if err := os.WriteFile(statPath, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}
