package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/engine/rig"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/ptp"
)

// target is the fairness objective: every client within 200 ms.
const target = 200 * time.Millisecond

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
	rounds := fs.Int("rounds", 4, "carousel rounds of each ANNOUNCE")
	repeat := fs.Int("repeat", 5, "copies of each RELEASE")
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
	clock, err := demoClock(stdout)
	if err != nil {
		return err
	}
	edgeAt, recvAt, where, closeLab, err := demoTopology(*inNetns, *edges, *receivers)
	if err != nil {
		return err
	}
	defer closeLab()
	nUnicast := int(float64(*receivers)**share + 0.5)
	fmt.Fprintf(stdout, "demo: %d edges, %d receivers (%d on multicast, %d by unicast to every edge) %s, %d periods of %v, %.0f%% loss per receiver, %d carousel rounds, %d RELEASE copies\n",
		*edges, *receivers, *receivers-nUnicast, nUnicast, where, *periods, *length, 100**loss, *rounds, *repeat)

	var lost, seen atomic.Int64
	lossy := func(i int, s receiver.Source) receiver.Source {
		return &lossySource{Source: s, p: *loss, rng: mrand.New(mrand.NewPCG(*seed, uint64(i))), lost: &lost, seen: &seen}
	}
	var mu sync.Mutex
	late := map[uint64][]time.Duration{} // period → each edge's lateness
	var all skew.Histogram
	var lines []periodLine
	lastLost := int64(0)
	// On a terminal, a status line counts down between the period lines.
	start := time.Now()
	total := time.Duration(*periods+1)**length + *length*8/10
	stopProgress := progress(stdout, func() string {
		mu.Lock()
		n := len(lines)
		mu.Unlock()
		left := max(total-time.Since(start), 0).Round(time.Second)
		return fmt.Sprintf("… %d of %d periods settled, about %v to go", n, *periods, left)
	})
	defer stopProgress()
	res, err := rig.Run(ctx, rig.Config{
		Receivers: *receivers, Unicast: nUnicast, Edges: *edges, Periods: *periods, Period: *length,
		Lead: *length * 8 / 10, Rounds: *rounds, Repeat: *repeat, Clock: clock,
		Sender: func(i int) (s edge.Sender, err error) {
			p := edgeAt(i)
			err = p.do(func() (err error) { s, err = udp.NewSender(p.group); return err })
			return s, err
		},
		Serve: func(i int, cfg unicast.ServerConfig) (s *unicast.Server, err error) {
			p := edgeAt(i)
			cfg.Listen = netip.AddrPortFrom(p.addr, 0)
			err = p.do(func() (err error) { s, err = unicast.NewServer(cfg); return err })
			return s, err
		},
		Listen: func(i int) (receiver.Source, error) {
			p := recvAt(i)
			var c *udp.Conn
			if err := p.do(func() (err error) { c, err = udp.Listen(p.group); return err }); err != nil {
				return nil, err
			}
			return lossy(i, c), nil
		},
		Dial: func(i int, e netip.AddrPort) (receiver.Source, error) {
			var c *unicast.Client
			err := recvAt(i).do(func() (err error) {
				c, err = unicast.Dial(unicast.ClientConfig{Edge: e, Streams: []uint32{1}, Retry: 50 * time.Millisecond})
				return err
			})
			if err != nil {
				return nil, err
			}
			return lossy(i, c), nil
		},
		OnRelease: func(r edge.Report) {
			mu.Lock()
			late[r.Period] = append(late[r.Period], r.Lateness)
			mu.Unlock()
		},
		OnPeriod: func(p rig.Period) {
			mu.Lock()
			defer mu.Unlock()
			l := periodFigures(p, late[p.Number], lost.Load()-lastLost)
			lastLost = lost.Load()
			for _, d := range p.Lateness() {
				all.Add(d)
			}
			lines = append(lines, l)
			fmt.Fprintln(stdout, clearLine(stdout)+l.String(*receivers))
		},
	})
	stopProgress()
	// Ctrl-C ends the run early; what was measured is still reported.
	interrupted := res != nil && ctx.Err() != nil
	if err != nil && !interrupted {
		return fmt.Errorf("%w (multicast and unicast on lo must work on this host)", err)
	}
	mu.Lock()
	done := len(lines)
	mu.Unlock()
	if interrupted {
		fmt.Fprintf(stdout, "interrupted after %d of %d periods\n", done, *periods)
		res.Periods = res.Periods[:done]
	}
	missing, early, badKeys := 0, 0, 0
	for _, p := range res.Periods {
		missing += p.Missing()
		early += p.Early()
		badKeys += countFalse(p.KeysOK, p.Arrival)
	}
	sum := summary{
		Deliveries: len(res.Periods)**receivers - missing, Expected: len(res.Periods) * *receivers, Early: early, WrongKeys: badKeys,
		Lost: lost.Load(), Seen: seen.Load(),
		P50: all.Quantile(0.5), P99: all.Quantile(0.99), Max: all.Quantile(1),
	}
	fmt.Fprintln(stdout, sum.String())
	if *report != "" {
		if err := writeReport(*report, res, lines, sum, all); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		fmt.Fprintf(stdout, "report: %s/report.json, %s/skew.svg\n", *report, *report)
	}
	switch {
	case interrupted:
		return errors.New("interrupted")
	case early > 0:
		return fmt.Errorf("%d arrivals before releaseAt", early)
	case badKeys > 0:
		return fmt.Errorf("%d receivers unwrapped keys that are not the origin's", badKeys)
	case missing > 0:
		return fmt.Errorf("%d deliveries missing", missing)
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

// place is where one role's sockets live: a function that runs code in
// its network namespace, the multicast group as seen from there, and the
// address its unicast server listens on.
type place struct {
	do    func(func() error) error
	group udp.Group
	addr  netip.Addr
}

// labHosts is how many namespaces the receivers are spread over.
const labHosts = 40

// demoTopology places edges and receivers: all on loopback, or each edge
// on its own network namespace and the receivers spread over labHosts
// more, joined by a bridge (root only).
func demoTopology(inNetns bool, edges, receivers int) (edgeAt, recvAt func(int) place, where string, closeLab func(), err error) {
	if !inNetns {
		here := place{do: func(f func() error) error { return f() }, group: udp.Loopback, addr: netip.MustParseAddr("127.0.0.1")}
		at := func(int) place { return here }
		return at, at, fmt.Sprintf("on loopback (multicast %v)", udp.Loopback), func() {}, nil
	}
	hosts := min(receivers, labHosts)
	lab, err := netns.Build(edges + hosts)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("-netns: %w", err)
	}
	on := func(h *netns.Host) place {
		g := udp.Group{Addr: udp.Loopback.Addr, Interface: h.Ifname, Hops: 1}
		return place{do: h.Do, group: g, addr: h.IPv4}
	}
	edgeAt = func(i int) place { return on(lab.Host(i)) }
	recvAt = func(i int) place { return on(lab.Host(edges + i%hosts)) }
	where = fmt.Sprintf("across %d network namespaces on a bridge (edges on %d of them, multicast %v with hop limit 1)", edges+hosts, edges, udp.Loopback.Addr)
	return edgeAt, recvAt, where, func() { lab.Close() }, nil
}

// periodLine is one period's figures, as printed and reported.
type periodLine struct {
	Period    uint64          `json:"period"`
	Lateness  []time.Duration `json:"edgeLatenessNs"` // each edge's first send past releaseAt, earliest bound
	Reached   int             `json:"receiversReached"`
	P50       time.Duration   `json:"arrivalP50Ns"` // arrival − releaseAt across receivers
	P99       time.Duration   `json:"arrivalP99Ns"`
	Max       time.Duration   `json:"arrivalMaxNs"`
	Spread    time.Duration   `json:"skewNs"` // max − min arrival
	Recovered int64           `json:"datagramsLostAndRecovered"`
}

func periodFigures(p rig.Period, late []time.Duration, lost int64) periodLine {
	l := p.Lateness()
	slices.Sort(l)
	return periodLine{Period: p.Number, Lateness: slices.Sorted(slices.Values(late)), Reached: len(l),
		P50: rig.Percentile(l, 50), P99: rig.Percentile(l, 99), Max: rig.Percentile(l, 100), Spread: p.Skew(), Recovered: lost}
}

func (l periodLine) String(receivers int) string {
	verdict := "within"
	if l.Spread > target {
		verdict = "OVER"
	}
	return fmt.Sprintf("period %d: edges sent at releaseAt+%v; %d/%d receivers; arrival releaseAt+ p50 %v p99 %v max %v; skew %v (%s the %v target); %d datagrams lost, recovered by FEC and repetition",
		l.Period, l.Lateness, l.Reached, receivers, l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond),
		l.Spread.Round(time.Microsecond), verdict, target, l.Recovered)
}

// summary closes the run.
type summary struct {
	Deliveries int   `json:"deliveries"`
	Expected   int   `json:"expected"`
	Early      int   `json:"early"`
	WrongKeys  int   `json:"wrongKeys"`
	Lost       int64 `json:"datagramsLost"`
	Seen       int64 `json:"datagramsSeen"`
	// Quantiles of arrival − releaseAt: histogram bucket upper bounds.
	P50 time.Duration `json:"arrivalP50Ns"`
	P99 time.Duration `json:"arrivalP99Ns"`
	Max time.Duration `json:"arrivalMaxNs"`
}

func (s summary) String() string {
	return fmt.Sprintf("summary: %d/%d deliveries, %d early, %d wrong keys; %d of %d datagrams lost; arrival − releaseAt p50 ≤ %v, p99 ≤ %v, max ≤ %v (target: all within %v); never early",
		s.Deliveries, s.Expected, s.Early, s.WrongKeys, s.Lost, s.Seen, s.P50, s.P99, s.Max, target)
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

// lossySource drops each datagram a receiver reads with probability p.
type lossySource struct {
	receiver.Source
	p          float64
	rng        *mrand.Rand
	lost, seen *atomic.Int64
}

func (l *lossySource) ReadBatch(ms []datagram.Message) (int, error) {
	for {
		n, err := l.Source.ReadBatch(ms)
		if err != nil {
			return 0, err
		}
		kept := datagram.Keep(ms, n, func(*datagram.Message) bool { return l.rng.Float64() >= l.p })
		// Once per batch: the counters are shared by every receiver.
		l.seen.Add(int64(n))
		l.lost.Add(int64(n - kept))
		if kept > 0 {
			return kept, nil
		}
	}
}

// demoClock is the system clock; a host whose kernel clock is not
// disciplined (no NTP/PTP, as on a laptop or this CI VM) is taken as
// synchronized with a 1 ms bound, which is sound here because origin, edges
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
