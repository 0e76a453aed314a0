package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/embargo-live/embargo/wire"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// Config describes one run. Zero values take the defaults in brackets.
type Config struct {
	Receivers int           // receiver sockets [1]
	Periods   int           // key periods released [3]
	Period    time.Duration // key period length [300ms]
	Lead      time.Duration // announce lead before each releaseAt [250ms]
	Stream    uint32        // [1]
	Edges     int           // edges releasing the same schedule [1]
	Rounds    int           // carousel rounds [edge.DefaultRounds]
	Repeat    int           // RELEASE copies [edge.DefaultRepeat]
	// Clock is every edge's clock [system clock assumed synchronized ±1ms,
	// which is sound when every role shares this host's clock].
	Clock ptp.Clock
	// EdgeClock, if set, gives edge i its own clock (a simulated offset,
	// say); Clock still schedules the run.
	EdgeClock func(edge int) ptp.Clock
	// UnicastNaive makes the edges' unicast servers the one-sendto-per-
	// subscriber baseline (unicast.ServerConfig.Naive), for comparisons.
	UnicastNaive bool
	// TAIOffset converts receivers' kernel stamps [Clock's, if it is a
	// *ptp.System, else ptp.DefaultTAIOffset].
	TAIOffset ptp.TAIOffset
	// Sender opens edge i's sender [udp.NewSender(udp.Loopback)].
	Sender func(edge int) (edge.Sender, error)
	// Listen opens receiver i's socket [udp.Listen(udp.Loopback)].
	Listen func(receiver int) (receiver.Source, error)
	// Unicast is how many receivers (the last ones) subscribe by unicast
	// to every edge instead of joining the group [0].
	Unicast int
	// UnicastListen is edge i's unicast address [127.0.0.1:0].
	UnicastListen func(edge int) netip.AddrPort
	// Serve opens edge i's unicast server [unicast.NewServer]: a hook for
	// opening it inside another network namespace.
	Serve func(edge int, cfg unicast.ServerConfig) (*unicast.Server, error)
	// Dial subscribes receiver i to an edge [subscriber.Dial].
	Dial func(receiver int, edge netip.AddrPort) (receiver.Source, error)
	// Grace is how long after a period's releaseAt the run waits for
	// stragglers before it settles the period as it is [Period]. Run ends
	// once every period has settled, so a long Grace costs nothing when
	// everything arrives; tests that must not count a receiver slowed by
	// the machine's load as one that lost a period set it long.
	Grace time.Duration
	// Waiter waits on Clock for the run's deadlines [ptp.Sleeper{}: the
	// harness needs no spin precision; the edges release with their own].
	Waiter ptp.Waiter
	// OnPeriod, if set, sees each period's figures once it has settled:
	// every receiver with the master key has it and every edge has
	// reported its release, or Grace has passed since its releaseAt.
	OnPeriod func(Period)
	// NoMaster lists receivers configured without the master key.
	NoMaster []int
	// Filter, if set, is attached to every receiver socket that allows it
	// (an eBPF filter: kernel pre-filter, stamps, loss injection).
	Filter Attacher
	// OnRelease, if set, sees each edge's release reports as they happen.
	OnRelease func(edge.Report)
	Logger    *slog.Logger
}

// Attacher attaches a socket filter (a *bpf.Filter), and is told each
// secret a receiver confirmed, so that its kernel stamps count as release
// skew (bpf.Filter.Confirm).
type Attacher interface {
	Attach(c syscall.Conn) error
	Confirm(stream uint32, period uint64, rk *[wire.RKLen]byte, releaseAt int64)
}

func (c *Config) defaults() error {
	c.Receivers = max(c.Receivers, 1)
	c.Edges = max(c.Edges, 1)
	c.Periods = cmp.Or(c.Periods, 3)
	c.Period = cmp.Or(c.Period, 300*time.Millisecond)
	c.Lead = cmp.Or(c.Lead, 250*time.Millisecond)
	c.Stream = cmp.Or(c.Stream, 1)
	c.Grace = cmp.Or(c.Grace, c.Period)
	if c.Waiter == nil {
		c.Waiter = ptp.Sleeper{}
	}
	if c.Clock == nil {
		sys, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
		if err != nil {
			return err
		}
		c.Clock = sys
	}
	if c.TAIOffset == 0 {
		c.TAIOffset = ptp.DefaultTAIOffset
		if sys, ok := c.Clock.(*ptp.System); ok {
			c.TAIOffset = sys.TAIOffset()
		}
	}
	if c.Sender == nil {
		c.Sender = func(int) (edge.Sender, error) { return udp.NewSender(udp.Loopback) }
	}
	if c.Listen == nil {
		c.Listen = func(int) (receiver.Source, error) { return udp.Listen(udp.Loopback) }
	}
	c.Unicast = min(max(c.Unicast, 0), c.Receivers)
	if c.UnicastListen == nil {
		c.UnicastListen = func(int) netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:0") }
	}
	if c.Serve == nil {
		c.Serve = func(_ int, cfg unicast.ServerConfig) (*unicast.Server, error) { return unicast.NewServer(cfg) }
	}
	if c.Dial == nil {
		stream := c.Stream
		c.Dial = func(_ int, e netip.AddrPort) (receiver.Source, error) {
			return subscriber.Dial(subscriber.Config{Edge: e, Streams: []uint32{stream}, Retry: 50 * time.Millisecond})
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run performs one run: it opens every socket, waits until every unicast
// receiver has subscribed, issues Periods periods starting one lead from
// then, waits until every period has settled (see Config.OnPeriod), and
// reports. An error from a role is returned with the result so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	org, master, err := origin.Generate()
	if err != nil {
		return nil, err
	}
	ring := seal.NewKeyRing(org.PublicKey())
	res := &Result{Config: cfg, Periods: make([]Period, cfg.Periods)}
	want := make([][]seal.ContentKey, cfg.Periods)

	var mu sync.Mutex
	// changed wakes the settling loop whenever a receiver delivers or an
	// edge reports: it never polls.
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	edges, servers, closeEdges, err := openEdges(&cfg, ring, func(r edge.Report) {
		mu.Lock()
		res.Releases = append(res.Releases, r)
		mu.Unlock()
		poke()
		if cfg.OnRelease != nil {
			cfg.OnRelease(r)
		}
	})
	defer closeEdges()
	if err != nil {
		return nil, err
	}
	recvs, srcs, err := openReceivers(&cfg, ring, master, servers, func(i int, ev receiver.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Stream != cfg.Stream || ev.Period >= uint64(cfg.Periods) || res.Periods[ev.Period].Arrival == nil {
			return
		}
		p := &res.Periods[ev.Period]
		p.Arrival[i], p.Opened[i] = ev.Arrival, ev.Opened
		p.KeysOK[i] = want[ev.Period] != nil && slices.Equal(ev.Keys, want[ev.Period])
		poke()
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range srcs {
			closeAll(s)
		}
	}()

	// The edges run from the start (their unicast servers answer the
	// subscribers), the receivers listen; the schedule starts once every
	// unicast receiver has subscribed, so that none misses a round.
	// A role that fails ends the run: waiting out the grace for periods it
	// can no longer deliver would only hide the error.
	var wg sync.WaitGroup
	errs := make(chan error, len(recvs)+len(edges))
	failed := func(err error) {
		if err != nil && !errors.Is(err, context.Canceled) {
			errs <- err
			cancel()
		}
	}
	for _, e := range edges {
		wg.Go(func() { failed(e.Run(runCtx)) })
	}
	for i, r := range recvs {
		wg.Go(func() { failed(r.Run(runCtx, srcs[i]...)) })
	}
	stop := func() { cancel(); wg.Wait() }
	if err := subscribed(runCtx, servers, cfg.Unicast); err != nil {
		stop()
		close(errs)
		for e := range errs {
			err = errors.Join(err, e) // a role that failed meanwhile is why
		}
		return nil, err
	}
	now, err := cfg.Clock.Now()
	if err != nil {
		stop()
		return nil, fmt.Errorf("bench: clock: %w", err)
	}
	sched := origin.Schedule{Epoch: now.Latest + int64(cfg.Lead) + int64(100*time.Millisecond), Period: cfg.Period, Lead: cfg.Lead, PresentDelay: cfg.Period}

	// Issue every bundle now: keys are recorded before any receiver can
	// deliver them.
	mu.Lock()
	for i := range res.Periods {
		p := &res.Periods[i]
		p.Number = uint64(i)
		p.ReleaseAt = sched.At(p.Number).ReleaseAt
		p.Arrival = make([]int64, cfg.Receivers)
		p.Opened = make([]int64, cfg.Receivers)
		p.KeysOK = make([]bool, cfg.Receivers)
	}
	mu.Unlock()
	for i := range cfg.Periods {
		keys, err := org.NewContentKeys(2)
		if err != nil {
			stop()
			return nil, err
		}
		b, err := org.Keys(cfg.Stream, uint64(i), sched.At(uint64(i)), keys)
		if err != nil {
			stop()
			return nil, err
		}
		mu.Lock()
		want[i] = keys
		mu.Unlock()
		for _, e := range edges {
			if err := e.Add(b); err != nil {
				stop()
				return nil, fmt.Errorf("bench: edge refused period %d: %w", i, err)
			}
		}
	}

	cpu0 := processCPU()
	err = settle(runCtx, &cfg, res, &mu, changed)
	if ctx.Err() == nil && errors.Is(err, context.Canceled) {
		err = nil // a role failed: its error is in errs
	}
	res.CPU = processCPU() - cpu0
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	for _, r := range recvs {
		res.Stats = append(res.Stats, r.Stats())
	}
	return res, err
}

// settle hands each period, in order, to OnPeriod (if set) once it has
// settled: every receiver with the master key has it and every edge has
// reported it, or Grace has passed since its releaseAt by the clock. It
// wakes on changed and on the deadline, never on a timer of its own. It
// returns once the last period has settled, or with the context's error.
func settle(ctx context.Context, cfg *Config, res *Result, mu *sync.Mutex, changed <-chan struct{}) error {
	done := func(i int) bool {
		mu.Lock()
		defer mu.Unlock()
		p := &res.Periods[i]
		for r, a := range p.Arrival {
			if a == 0 && !slices.Contains(cfg.NoMaster, r) {
				return false
			}
		}
		return released(res.Releases, p.Number) >= cfg.Edges
	}
	for i := range res.Periods {
		due := make(chan error, 1)
		dctx, cancel := context.WithCancel(ctx)
		go func() {
			_, err := cfg.Waiter.WaitUntil(dctx, cfg.Clock, res.Periods[i].ReleaseAt+int64(cfg.Grace))
			due <- err
		}()
		var err error
	wait:
		for !done(i) {
			select {
			case <-changed:
			case err = <-due:
				break wait
			}
		}
		cancel()
		if err != nil {
			return err
		}
		if cfg.OnPeriod != nil {
			mu.Lock()
			p := res.Periods[i].clone()
			mu.Unlock()
			cfg.OnPeriod(p)
		}
	}
	return nil
}

// released counts the edges' reports of period p.
func released(rs []edge.Report, p uint64) int {
	n := 0
	for _, r := range rs {
		if r.Period == p {
			n++
		}
	}
	return n
}
