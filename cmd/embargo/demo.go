package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/ptp"
)

// runDemo runs a live event in one process over real loopback sockets: an
// origin rotating keys, two edges, and receivers — some on the multicast
// group pinned to lo, the rest subscribed by unicast to both edges — with
// datagram loss injected at every receiver, as on last-mile links.
func runDemo(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("demo", "Run a live event in one process over loopback sockets: an origin rotating keys, two edges releasing\neach period at its agreed instant, and receivers on multicast and unicast with injected loss; then\nwrite a report (JSON and an SVG histogram of arrival skew against the 200 ms target).", stdout)
	periods := fs.Int("periods", 10, "key periods to run")
	length := fs.Duration("period", 2*time.Second, "key period length")
	receivers := fs.Int("receivers", 1000, "receivers, each with its own sockets")
	share := fs.Float64("unicast", 0.5, "share of receivers that subscribe by unicast (to every edge) instead of multicast")
	edges := fs.Int("edges", 2, "edges releasing the same schedule")
	loss := fs.Float64("loss", 0.05, "probability that a receiver loses any one datagram")
	rounds := fs.Int("rounds", edge.DefaultRounds, "carousel rounds of each ANNOUNCE")
	repeat := fs.Int("repeat", edge.DefaultRepeat, "copies of each RELEASE")
	seed := fs.Uint64("seed", 1, "seed of the injected loss")
	report := fs.String("report", "embargo-report", "directory for report.json and skew.svg (empty: none)")
	inNetns := fs.Bool("netns", false, "root only: run the same topology across network namespaces (edges on their own hosts, receivers spread over 40 more, joined by a bridge)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *periods < 1 || *length < 100*time.Millisecond || *loss < 0 || *loss >= 1 || *rounds < 1 || *repeat < 1 ||
		*receivers < 1 || *receivers > 5000 || *share < 0 || *share > 1 || *edges < 1 || *edges > 8 {
		return fmt.Errorf("need periods ≥ 1, period ≥ 100ms, 0 ≤ loss < 1, rounds ≥ 1, repeat ≥ 1, 1 ≤ receivers ≤ 5000, 0 ≤ unicast ≤ 1, 1 ≤ edges ≤ 8")
	}
	clock, err := hostClock(stdout)
	if err != nil {
		return err
	}
	topo := bench.Loopback()
	if *inNetns {
		if topo, err = bench.Namespaces(*edges, *receivers); err != nil {
			return err
		}
	}
	defer topo.Close()
	nUnicast := int(float64(*receivers)**share + 0.5)
	fmt.Fprintf(stdout, "demo: %d edges, %d receivers (%d on multicast, %d by unicast to every edge) %s, %d periods of %v, %.0f%% loss per receiver, %d carousel rounds, %d RELEASE copies\n",
		*edges, *receivers, *receivers-nUnicast, nUnicast, topo.Where, *periods, *length, 100**loss, *rounds, *repeat)

	lossy := bench.NewLoss(*loss, *seed)
	tally := bench.NewTally(lossy)
	// On a terminal, a status line counts down between the period lines.
	start := time.Now()
	total := time.Duration(*periods+1)**length + *length*8/10
	stopProgress := progress(stdout, func() string {
		left := max(total-time.Since(start), 0).Round(time.Second)
		return fmt.Sprintf("… %d of %d periods settled, about %v to go", len(tally.Lines()), *periods, left)
	})
	defer stopProgress()
	cfg := bench.Config{
		Receivers: *receivers, Unicast: nUnicast, Edges: *edges, Periods: *periods, Period: *length,
		Lead: *length * 8 / 10, Rounds: *rounds, Repeat: *repeat, Clock: clock,
		OnRelease: tally.OnRelease,
		OnPeriod: func(p bench.Period) {
			fmt.Fprintln(stdout, clearLine(stdout)+tally.Add(p).String(*receivers))
		},
	}
	topo.Wire(&cfg, lossy.Wrap)
	res, err := bench.Run(ctx, cfg)
	stopProgress()
	// Ctrl-C ends the run early; what was measured is still reported.
	interrupted := res != nil && ctx.Err() != nil
	if err != nil && !interrupted {
		return fmt.Errorf("%w (multicast and unicast on lo must work on this host)", err)
	}
	lines := tally.Lines()
	if interrupted {
		fmt.Fprintf(stdout, "interrupted after %d of %d periods\n", len(lines), *periods)
		res.Periods = res.Periods[:len(lines)]
	}
	sum := tally.Summary(res.Periods, *receivers)
	fmt.Fprintln(stdout, sum.String())
	if *report != "" {
		if err := bench.WriteReport(*report, res, lines, sum, tally.Histogram()); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		fmt.Fprintf(stdout, "report: %s/report.json, %s/skew.svg\n", *report, *report)
	}
	switch {
	case interrupted:
		return errors.New("interrupted")
	case sum.Early > 0:
		return fmt.Errorf("%d arrivals before releaseAt", sum.Early)
	case sum.WrongKeys > 0:
		return fmt.Errorf("%d receivers unwrapped keys that are not the origin's", sum.WrongKeys)
	case sum.Missing() > 0:
		return fmt.Errorf("%d deliveries missing", sum.Missing())
	}
	return nil
}

// progress redraws status() every half second on w when w is a terminal,
// until the returned stop is called; elsewhere it does nothing.
func progress(w io.Writer, status func() string) (stop func()) {
	if clearLine(w) == "" {
		return func() {}
	}
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, clearLine(w))
				return
			case <-t.C:
				fmt.Fprint(w, clearLine(w)+status())
			}
		}
	})
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// clearLine is what returns to the start of a terminal line and erases it,
// or "" when w is not a terminal.
func clearLine(w io.Writer) string {
	f, ok := w.(*os.File)
	if !ok {
		return ""
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return ""
	}
	return "\r\033[K"
}

// hostClock is bench.HostClock, saying which clock it is on w.
func hostClock(w io.Writer) (ptp.Clock, error) {
	c, line, err := bench.HostClock()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(w, line)
	return c, nil
}
