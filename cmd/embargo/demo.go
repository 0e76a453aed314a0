package main

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/rig"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
)

// runDemo runs every role in one process over real loopback multicast: an
// origin makes keys and signed, sharded ANNOUNCEs; an edge carousels them
// and releases each period's secret at releaseAt by commit-wait on the
// system clock; receivers rebuild, verify, open and unwrap. Loss is
// injected independently at each receiver, as on last-mile links.
func runDemo(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("demo", "Run the release pipeline in one process: origin → edge → receivers over loopback multicast,\nwith datagram loss injected at each receiver, releasing each period's keys at its agreed instant.", stdout)
	periods := fs.Int("periods", 5, "key periods to run")
	length := fs.Duration("period", time.Second, "key period length")
	receivers := fs.Int("receivers", 5, "receivers, each with its own socket")
	loss := fs.Float64("loss", 0.10, "probability that a receiver loses any one datagram")
	rounds := fs.Int("rounds", 4, "carousel rounds of each ANNOUNCE")
	repeat := fs.Int("repeat", 3, "copies of each RELEASE")
	seed := fs.Uint64("seed", 1, "seed of the injected loss")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *periods < 1 || *length < 100*time.Millisecond || *loss < 0 || *loss >= 1 || *rounds < 1 || *repeat < 1 || *receivers < 1 || *receivers > 1000 {
		return fmt.Errorf("need periods ≥ 1, period ≥ 100ms, 0 ≤ loss < 1, rounds ≥ 1, repeat ≥ 1, 1 ≤ receivers ≤ 1000")
	}
	clock, err := demoClock(stdout)
	if err != nil {
		return err
	}
	g := udp.Loopback
	fmt.Fprintf(stdout, "demo: %d periods of %v to %d receivers on %v, %.0f%% loss per receiver, %d carousel rounds, %d RELEASE copies\n",
		*periods, *length, *receivers, g, 100**loss, *rounds, *repeat)

	var lost, seen atomic.Int64
	var mu sync.Mutex
	res, err := rig.Run(ctx, rig.Config{
		Receivers: *receivers, Periods: *periods, Period: *length, Lead: *length * 8 / 10,
		Rounds: *rounds, Repeat: *repeat, Clock: clock,
		Sender: func(int) (edge.Sender, error) { return udp.NewSender(g) },
		Listen: func(i int) (receiver.Source, error) {
			c, err := udp.Listen(g)
			if err != nil {
				return nil, err
			}
			return &lossy{Source: c, p: *loss, rng: mrand.New(mrand.NewPCG(*seed, uint64(i))), lost: &lost, seen: &seen}, nil
		},
		OnRelease: func(r edge.Report) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stdout, "period %d: RELEASE sent at releaseAt+%v by the clock's earliest bound\n", r.Period, r.Lateness)
		},
	})
	if err != nil {
		return fmt.Errorf("%w (multicast on lo must work on this host)", err)
	}
	missing := 0
	var late []time.Duration
	for _, p := range res.Periods {
		got := *receivers - p.Missing()
		missing += p.Missing()
		l := p.Lateness()
		slices.Sort(l)
		late = append(late, l...)
		line := fmt.Sprintf("period %d: %d/%d receivers got the keys", p.Number, got, *receivers)
		if len(l) > 0 {
			line += fmt.Sprintf(", kernel arrival releaseAt+%v…+%v, delivery skew %v", l[0], l[len(l)-1], p.OpenSkew())
		}
		if bad := countFalse(p.KeysOK, p.Arrival); bad > 0 {
			return fmt.Errorf("period %d: %d receivers unwrapped keys that are not the origin's", p.Number, bad)
		}
		if p.Early() > 0 {
			return fmt.Errorf("period %d: %d arrivals before releaseAt", p.Number, p.Early())
		}
		fmt.Fprintln(stdout, line)
	}
	slices.Sort(late)
	fmt.Fprintf(stdout, "summary: %d/%d deliveries; %d of %d datagrams lost; arrival past releaseAt p50 %v, max %v; never early\n",
		*periods**receivers-missing, *periods**receivers, lost.Load(), seen.Load(), pct(late, 50), pct(late, 100))
	fmt.Fprintf(stdout, "not built yet: unicast sessions, the origin service with CPIX, eBPF stamping and the bench suite — see the README's status.\n")
	if missing > 0 {
		return fmt.Errorf("%d deliveries missing", missing)
	}
	return nil
}

func countFalse(ok []bool, arrival []int64) int {
	n := 0
	for i := range ok {
		if arrival[i] != 0 && !ok[i] {
			n++
		}
	}
	return n
}

// lossy drops each datagram a receiver reads with probability p.
type lossy struct {
	receiver.Source
	p          float64
	rng        *mrand.Rand
	lost, seen *atomic.Int64
}

func (l *lossy) ReadBatch(ms []udp.Message) (int, error) {
	for {
		n, err := l.Source.ReadBatch(ms)
		if err != nil {
			return 0, err
		}
		kept := 0
		for i := range n {
			l.seen.Add(1)
			if l.rng.Float64() < l.p {
				l.lost.Add(1)
				continue
			}
			ms[kept], ms[i] = ms[i], ms[kept]
			kept++
		}
		if kept > 0 {
			return kept, nil
		}
	}
}

// demoClock is the system clock; a host whose kernel clock is not
// disciplined (no NTP/PTP, as on a laptop or this CI VM) is taken as
// synchronized with a 1 ms bound, which is sound here because origin, edge
// and receivers all read this one clock. Production edges never do this
// implicitly.
func demoClock(stdout io.Writer) (ptp.Clock, error) {
	c, err := ptp.NewSystem()
	if err != nil {
		return nil, err
	}
	r, err := c.Now()
	if err != nil {
		return nil, fmt.Errorf("read system clock: %w", err)
	}
	if r.State == ptp.StateSynchronized {
		fmt.Fprintf(stdout, "clock: system clock, synchronized, ±%v\n", r.Uncertainty())
		return c, nil
	}
	fmt.Fprintf(stdout, "clock: system clock not kernel-synchronized (%s); every role shares it, so the demo assumes ±1ms\n", r.Reason)
	return ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
}

// pct returns the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}
