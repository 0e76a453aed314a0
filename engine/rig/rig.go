package rig

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

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
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
	// Dial subscribes receiver i to an edge [unicast.Dial].
	Dial func(receiver int, edge netip.AddrPort) (receiver.Source, error)
	// OnPeriod, if set, sees each period's figures once it has settled
	// (every receiver has it and every edge has reported its release, or
	// a period after its releaseAt).
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

// Attacher attaches a socket filter (a *bpf.Filter).
type Attacher interface {
	Attach(c syscall.Conn) error
}

// Result is what the run observed.
type Result struct {
	Config   Config
	Releases []edge.Report // every edge's release reports
	Periods  []Period
	// Receivers' counters, by receiver.
	Stats []receiver.Stats
	// CPU is the process's CPU time (user+system) while periods ran.
	CPU time.Duration
}

// Period is one key period as every receiver saw it.
type Period struct {
	Number    uint64
	ReleaseAt int64 // TAI ns
	// Arrival holds each receiver's kernel arrival time of the first valid
	// RELEASE (TAI ns), 0 if it got no event.
	Arrival []int64
	// Opened holds when each receiver had the keys (TAI ns, user space).
	Opened []int64
	// KeysOK reports per receiver whether the delivered keys were the
	// origin's.
	KeysOK []bool
}

// Missing counts receivers without an event for p.
func (p Period) Missing() int { return countIf(p.Arrival, func(a int64) bool { return a == 0 }) }

// Early counts arrivals before releaseAt: the property that must be 0.
func (p Period) Early() int {
	return countIf(p.Arrival, func(a int64) bool { return a != 0 && a < p.ReleaseAt })
}

// Skew is max − min arrival across the receivers that got the period.
func (p Period) Skew() time.Duration { return spread(p.Arrival) }

// OpenSkew is max − min user-space delivery time across receivers.
func (p Period) OpenSkew() time.Duration { return spread(p.Opened) }

// Lateness returns arrival − releaseAt for every receiver that got p.
func (p Period) Lateness() []time.Duration {
	var out []time.Duration
	for _, a := range p.Arrival {
		if a != 0 {
			out = append(out, time.Duration(a-p.ReleaseAt))
		}
	}
	return out
}

// Percentile returns the p-th percentile (nearest rank) of sorted, or the
// zero value if it is empty.
func Percentile[T cmp.Ordered](sorted []T, p int) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func countIf(xs []int64, f func(int64) bool) int {
	n := 0
	for _, x := range xs {
		if f(x) {
			n++
		}
	}
	return n
}

func spread(xs []int64) time.Duration {
	var lo, hi int64
	for _, x := range xs {
		if x == 0 {
			continue
		}
		if lo == 0 || x < lo {
			lo = x
		}
		hi = max(hi, x)
	}
	return time.Duration(hi - lo)
}

func (c *Config) defaults() error {
	c.Receivers = max(c.Receivers, 1)
	c.Edges = max(c.Edges, 1)
	c.Periods = cmp.Or(c.Periods, 3)
	c.Period = cmp.Or(c.Period, 300*time.Millisecond)
	c.Lead = cmp.Or(c.Lead, 250*time.Millisecond)
	c.Stream = cmp.Or(c.Stream, 1)
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
			return unicast.Dial(unicast.ClientConfig{Edge: e, Streams: []uint32{stream}, Retry: 50 * time.Millisecond})
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run performs one run: it opens every socket, issues Periods periods
// starting one lead from now, waits until the last is released plus a
// grace of one period, and reports.
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
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	edges, servers, closeEdges, err := openEdges(&cfg, ring, func(r edge.Report) {
		mu.Lock()
		res.Releases = append(res.Releases, r)
		mu.Unlock()
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
	var wg sync.WaitGroup
	errs := make(chan error, len(recvs)+len(edges))
	for _, e := range edges {
		wg.Go(func() {
			if err := e.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		})
	}
	for i, r := range recvs {
		wg.Go(func() { errs <- r.Run(runCtx, srcs[i]...) })
	}
	stop := func() { cancel(); wg.Wait() }
	if err := subscribed(ctx, servers, cfg.Unicast); err != nil {
		stop()
		return nil, err
	}
	now, err := cfg.Clock.Now()
	if err != nil {
		stop()
		return nil, fmt.Errorf("rig: clock: %w", err)
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
				return nil, fmt.Errorf("rig: edge refused period %d: %w", i, err)
			}
		}
	}

	settled := make(chan struct{})
	go func() {
		defer close(settled)
		if cfg.OnPeriod != nil {
			settle(ctx, &cfg, res, &mu)
		}
	}()
	cpu0 := processCPU()
	last := sched.At(uint64(cfg.Periods - 1)).ReleaseAt
	err = waitUntil(ctx, cfg.Clock, last+int64(cfg.Period))
	<-settled // every period's deadline has passed: it hands over the last ones
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

func openReceivers(cfg *Config, ring *seal.KeyRing, master []byte, servers []*unicast.Server, on func(int, receiver.Event)) ([]*receiver.Receiver, [][]receiver.Source, error) {
	recvs := make([]*receiver.Receiver, cfg.Receivers)
	srcs := make([][]receiver.Source, 0, cfg.Receivers)
	fail := func(err error) ([]*receiver.Receiver, [][]receiver.Source, error) {
		for _, s := range srcs {
			closeAll(s)
		}
		return nil, nil, err
	}
	for i := range recvs {
		m := master
		if slices.Contains(cfg.NoMaster, i) {
			m = nil
		}
		r, err := receiver.New(receiver.Config{
			Trusted: ring, Master: m, Streams: []uint32{cfg.Stream}, TAIOffset: cfg.TAIOffset,
			OnEvent: func(ev receiver.Event) { on(i, ev) }, Logger: cfg.Logger,
		})
		if err != nil {
			return fail(err)
		}
		var mine []receiver.Source
		if i < cfg.Receivers-cfg.Unicast {
			s, err := cfg.Listen(i)
			if err != nil {
				return fail(fmt.Errorf("rig: receiver %d: %w", i, err))
			}
			mine = append(mine, s)
		} else {
			for _, srv := range servers {
				s, err := cfg.Dial(i, srv.Addr())
				if err != nil {
					closeAll(mine)
					return fail(fmt.Errorf("rig: receiver %d: %w", i, err))
				}
				mine = append(mine, s)
			}
		}
		srcs = append(srcs, mine)
		for _, s := range mine {
			if c, ok := s.(syscall.Conn); ok && cfg.Filter != nil {
				if err := cfg.Filter.Attach(c); err != nil {
					return fail(fmt.Errorf("rig: receiver %d: %w", i, err))
				}
			}
		}
		recvs[i] = r
	}
	return recvs, srcs, nil
}

// subscribed waits until every server holds n subscriptions.
func subscribed(ctx context.Context, servers []*unicast.Server, n int) error {
	if n == 0 {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, srv := range servers {
		for srv.Sessions().Stats().Subscribers < n {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("rig: %d of %d unicast receivers subscribed to %v", srv.Sessions().Stats().Subscribers, n, srv.Addr())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// settle hands each period to OnPeriod once every receiver has it or a
// period has passed since its releaseAt.
func settle(ctx context.Context, cfg *Config, res *Result, mu *sync.Mutex) {
	for i := range res.Periods {
		deadline := res.Periods[i].ReleaseAt + int64(cfg.Period)
		for {
			mu.Lock()
			done := res.Periods[i].Missing() == 0 && released(res.Releases, res.Periods[i].Number) == cfg.Edges
			mu.Unlock()
			now, err := cfg.Clock.Now()
			if done || err != nil || now.Earliest >= deadline {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		mu.Lock()
		p := res.Periods[i].clone()
		mu.Unlock()
		cfg.OnPeriod(p)
	}
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

func (p Period) clone() Period {
	p.Arrival, p.Opened, p.KeysOK = slices.Clone(p.Arrival), slices.Clone(p.Opened), slices.Clone(p.KeysOK)
	return p
}

func openEdges(cfg *Config, ring *seal.KeyRing, on func(edge.Report)) ([]*edge.Edge, []*unicast.Server, func(), error) {
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	edges := make([]*edge.Edge, cfg.Edges)
	var servers []*unicast.Server
	for i := range edges {
		s, err := cfg.Sender(i)
		if err != nil {
			return nil, nil, closeAll, fmt.Errorf("rig: edge %d: %w", i, err)
		}
		if c, ok := s.(interface{ Close() error }); ok {
			closers = append(closers, c.Close)
		}
		senders := []edge.Sender{s}
		var srv *unicast.Server
		if cfg.Unicast > 0 {
			srv, err = cfg.Serve(i, unicast.ServerConfig{
				Listen: cfg.UnicastListen(i), Clock: cfg.Clock, Logger: cfg.Logger, Naive: cfg.UnicastNaive,
				Sessions: unicast.SessionConfig{Streams: []uint32{cfg.Stream}, MaxPerAddress: cfg.Receivers},
			})
			if err != nil {
				return nil, nil, closeAll, fmt.Errorf("rig: edge %d: %w", i, err)
			}
			closers = append(closers, srv.Close)
			servers = append(servers, srv)
			senders = append(senders, srv)
		}
		clock := cfg.Clock
		if cfg.EdgeClock != nil {
			clock = cfg.EdgeClock(i)
		}
		e, err := edge.New(edge.Config{
			ID: uint32(i + 1), Clock: clock, Trusted: ring, Senders: senders,
			Lead: cfg.Lead, Rounds: cfg.Rounds, Repeat: cfg.Repeat, Logger: cfg.Logger, OnRelease: on,
		})
		if err != nil {
			return nil, nil, closeAll, err
		}
		edges[i] = e
	}
	return edges, servers, closeAll, nil
}

func closeAll(srcs []receiver.Source) {
	for _, s := range srcs {
		s.Close()
	}
}

// waitUntil sleeps until c's earliest time reaches t.
func waitUntil(ctx context.Context, c ptp.Clock, t int64) error {
	for {
		r, err := c.Now()
		if err != nil {
			return err
		}
		if r.Earliest >= t {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(t-r.Earliest), 100*time.Millisecond)):
		}
	}
}
