package bench

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/timedaemons"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
	"github.com/embargo-live/embargo/wire"
)

// SourceClock is an edge's own clock and the name of its source.
type SourceClock struct {
	Name  string
	Clock ptp.Clock
}

// DaemonClocks are two edge clocks whose bounds come from real time
// daemons, started by StartDaemonClocks: edge 0's from a chronyd -x client
// of a `local stratum 1` server, edge 1's from a ptp4l slave (software
// timestamping, free_running 1) of a master, each in network namespaces of
// its own, as the fault suite's TestClockSources runs them. Every daemon
// measures this host's clock against itself, so the host clock is the
// true clock: nothing steers it.
type DaemonClocks struct {
	Clocks []SourceClock
	lab    *netns.Lab
	dir    string
	procs  []*timedaemons.Proc
	srcs   []*daemon.Source
}

// StartDaemonClocks builds the namespaces (host 0 runs the chronyd server
// and the ptp4l master, host 1 the chronyd client, host 2 the ptp4l
// slave), starts the daemons, opens a source on the client's and the
// slave's sockets and waits up to within for both to read synchronized.
// Each clock is wrapped in the guard, as the edge command does. It needs
// root and Debian's chrony and linuxptp; the error says which is missing.
// The caller must Close it.
func StartDaemonClocks(within time.Duration) (d *DaemonClocks, err error) {
	if err := timedaemons.Need("chronyd", "ptp4l"); err != nil {
		return nil, err
	}
	d = &DaemonClocks{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.lab, err = netns.Build(3, nil); err != nil {
		return nil, err
	}
	if d.dir, err = os.MkdirTemp("", "embargo-clock-daemons-"); err != nil {
		return nil, err
	}
	sock, srv, cli, err := timedaemons.Chrony(d.dir, d.lab.Host(0), d.lab.Host(1))
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, srv, cli)
	ptpSock, mst, slv, err := timedaemons.PTP4L(d.dir, d.lab.Host(0), d.lab.Host(2))
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, mst, slv)
	deadline := time.Now().Add(within)
	for _, open := range []func() (*daemon.Source, error){
		func() (*daemon.Source, error) { return daemon.OpenChrony(sock) },
		func() (*daemon.Source, error) {
			return daemon.OpenPTP4L(ptpSock, daemon.PTP4LOptions{FreeRunning: true})
		},
	} {
		s, err := timedaemons.Open(time.Until(deadline), open)
		if err != nil {
			return nil, err
		}
		d.srcs = append(d.srcs, s)
	}
	for _, s := range d.srcs {
		for st := s.Status(); st.State != ptp.StateSynchronized; st = s.Status() {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s not synchronized after %v: %s", s.Name(), within, st.Reason)
			}
			time.Sleep(100 * time.Millisecond)
		}
		d.Clocks = append(d.Clocks, SourceClock{Name: s.Name() + ", guarded", Clock: ptp.NewGuard(s)})
	}
	return d, nil
}

// Close closes the sources, stops the daemons and deletes the namespaces
// and files.
func (d *DaemonClocks) Close() error {
	for _, s := range d.srcs {
		s.Close()
	}
	for _, p := range d.procs {
		p.Stop()
	}
	var errs []error
	if d.lab != nil {
		errs = append(errs, d.lab.Close())
	}
	if d.dir != "" {
		errs = append(errs, os.RemoveAll(d.dir))
	}
	return errors.Join(errs...)
}

// firstSends wraps each edge's first sender to stamp, by the host clock,
// when each period's first RELEASE copy was handed to it: the true instant
// an edge released, to set against the bound its clock stated.
type firstSends struct {
	mu    sync.Mutex
	first []map[uint64]int64 // by edge: period → TAI ns
}

func newFirstSends(edges int) *firstSends {
	f := &firstSends{first: make([]map[uint64]int64, edges)}
	for i := range f.first {
		f.first[i] = map[uint64]int64{}
	}
	return f
}

// wrap returns s stamping edge i's sends.
func (f *firstSends) wrap(i int, s edge.Sender) edge.Sender {
	return stampingSender{Sender: s, f: f, edge: i}
}

type stampingSender struct {
	edge.Sender
	f    *firstSends
	edge int
}

func (s stampingSender) Send(typ wire.Type, dgs [][]byte) (int, error) {
	if typ == wire.TypeRelease {
		at := ptp.SystemTAI()
		s.f.mu.Lock()
		for _, d := range dgs {
			if h, err := wire.Peek(d); err == nil {
				if _, ok := s.f.first[s.edge][h.Period]; !ok {
					s.f.first[s.edge][h.Period] = at
				}
			}
		}
		s.f.mu.Unlock()
	}
	return s.Sender.Send(typ, dgs)
}

// Close closes the wrapped sender if it has Close.
func (s stampingSender) Close() error {
	if c, ok := s.Sender.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// EdgeSkew is, over a run's periods, the spread of the edges' first
// RELEASE sends by the true clock against the sum of the bounds the
// edges' clocks stated at their commit-waits.
type EdgeSkew struct {
	Edges   []EdgeClockFigures `json:"edges"`
	SkewP50 time.Duration      `json:"edgeSendSkewP50Ns"`
	SkewMax time.Duration      `json:"edgeSendSkewMaxNs"`
	SumP50  time.Duration      `json:"boundSumP50Ns"`
	SumMin  time.Duration      `json:"boundSumMinNs"`
	// Within counts the periods whose send skew was within the sum of
	// the bounds, of Periods released by every edge.
	Within  int `json:"periodsWithinBoundSum"`
	Periods int `json:"periods"`
}

// EdgeClockFigures are one edge's clock as its releases reported it.
type EdgeClockFigures struct {
	Clock    string        `json:"clockSource"`
	BoundP50 time.Duration `json:"boundP50Ns"` // stated at the commit-wait
	BoundMax time.Duration `json:"boundMaxNs"`
	AgeMax   time.Duration `json:"clockDataAgeMaxNs"`
	LateP50  time.Duration `json:"sendLatenessP50Ns"` // by the earliest bound
	LateMax  time.Duration `json:"sendLatenessMaxNs"`
	// Held counts releases an unsynchronized clock held at least once.
	Held int `json:"heldReleases"`
}

// edgeSkew sums up sends (from firstSends) and the edges' reports.
func edgeSkew(names []string, f *firstSends, reports []edge.Report) *EdgeSkew {
	es := &EdgeSkew{}
	sums := map[uint64]time.Duration{}
	bounds, lates := make([][]time.Duration, len(names)), make([][]time.Duration, len(names))
	for i, n := range names {
		es.Edges = append(es.Edges, EdgeClockFigures{Clock: n})
		for _, r := range reports {
			if int(r.Edge) != i+1 { // bench edges are numbered from 1
				continue
			}
			sums[r.Period] += r.Clock.Uncertainty()
			bounds[i], lates[i] = append(bounds[i], r.Clock.Uncertainty()), append(lates[i], r.Lateness)
			es.Edges[i].AgeMax = max(es.Edges[i].AgeMax, r.Clock.DataAge)
			if r.Held > 0 {
				es.Edges[i].Held++
			}
		}
		slices.Sort(bounds[i])
		slices.Sort(lates[i])
		es.Edges[i].BoundP50, es.Edges[i].BoundMax = Percentile(bounds[i], 50), Percentile(bounds[i], 100)
		es.Edges[i].LateP50, es.Edges[i].LateMax = Percentile(lates[i], 50), Percentile(lates[i], 100)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var skews, totals []time.Duration
	for p, sum := range sums {
		lo, hi, n := int64(0), int64(0), 0
		for _, first := range f.first {
			if at, ok := first[p]; ok {
				if n == 0 || at < lo {
					lo = at
				}
				hi, n = max(hi, at), n+1
			}
		}
		if n != len(f.first) {
			continue
		}
		skew := time.Duration(hi - lo)
		skews, totals = append(skews, skew), append(totals, sum)
		if skew <= sum {
			es.Within++
		}
	}
	slices.Sort(skews)
	slices.Sort(totals)
	es.Periods = len(skews)
	es.SkewP50, es.SkewMax = Percentile(skews, 50), Percentile(skews, 100)
	es.SumP50, es.SumMin = Percentile(totals, 50), Percentile(totals, 0)
	return es
}

// String is the run's line.
func (es *EdgeSkew) String() string {
	var b strings.Builder
	us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	for i, e := range es.Edges {
		fmt.Fprintf(&b, "edge %d on %s: stated bound p50 ±%v max ±%v (data up to %v old), sent releaseAt+ p50 %v max %v by its earliest bound, %d releases held; ",
			i, e.Clock, us(e.BoundP50), us(e.BoundMax), e.AgeMax.Round(time.Millisecond), us(e.LateP50), us(e.LateMax), e.Held)
	}
	fmt.Fprintf(&b, "send skew across the edges p50 %v max %v against the sum of their stated bounds p50 %v (min %v): within it in %d of %d periods",
		us(es.SkewP50), us(es.SkewMax), us(es.SumP50), us(es.SumMin), es.Within, es.Periods)
	return b.String()
}
