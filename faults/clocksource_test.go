//go:build linux

package faults

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
	"github.com/embargo-live/embargo/ptp/daemon/daemontest"
)

var clockSoak = flag.Bool("faults.clocksoak", false, "TestClockSources releases for 10 minutes (1,500 periods) instead of 12, to count holds from healthy daemons")

// TestClockSources: two edges whose bounds come from real time daemons —
// edge 0 on chrony (a chronyd -x client on its host, the server on the
// origin host), edge 1 on ptp4l (a slave over the lab bridge, software
// timestamping, free_running 1, the master on the origin host) — release
// one event, each clock wrapped in the guard as the edge command does. No
// first RELEASE may be sent before releaseAt by the true clock (the host
// clock, which both daemons measure), every receiver must get every
// period, and the skew between the two edges' first sends of each period
// is reported against the sum of the bounds their clocks stated at the
// release, as each release's report gives it. Healthy daemons should cause no hold; -faults.clocksoak runs it
// for 10 minutes to count them.
func TestClockSources(t *testing.T) {
	realtime.Exclusive(t) // the suite saturates the CPUs: nothing real-time may run beside it
	daemontest.Need(t, "chronyd", "ptp4l")
	n, ahead := uint64(12), uint64(64)
	if *clockSoak {
		n = 1500
	}
	period, lead := 400*time.Millisecond, 300*time.Millisecond
	// The event starts 10 s out: time for both daemons to synchronize.
	l := newLab(t, 1, period, lead, 10*time.Second)
	ps := periods(0, n)
	chronySock, _, _ := daemontest.Chrony(t, l.originHost(), l.edgeHost(0))
	ptpSock, _, _ := daemontest.PTP4L(t, l.originHost(), l.edgeHost(1))
	srcs := []*daemon.Source{
		daemontest.Open(t, 5*time.Second, func() (*daemon.Source, error) { return daemon.OpenChrony(chronySock) }),
		daemontest.Open(t, 5*time.Second, func() (*daemon.Source, error) {
			return daemon.OpenPTP4L(ptpSock, daemon.PTP4LOptions{FreeRunning: true})
		}),
	}
	for _, s := range srcs {
		wait.For(t, time.Duration(l.sched.At(0).ReleaseAt-truth())-lead, s.Name()+" synchronized before the event", func() bool {
			return s.Status().State == ptp.StateSynchronized
		})
	}
	clocks := make([]ptp.Clock, len(srcs))
	edges := make([]*runningEdge, len(srcs))
	for i, s := range srcs {
		clocks[i] = ptp.NewGuard(s)
		edges[i] = l.startEdge(i, edgeOpts{clock: clocks[i], periods: ps[:min(n, ahead)]})
	}
	var recs []*recorder
	for i := range 2 {
		recs = append(recs, l.startReceiver(l.multicast(l.recvHost(i))))
	}

	// The bundles are fed ahead periods early, as an edge holds a bounded
	// number.
	for _, p := range ps {
		if q := p + ahead; q < n {
			for i, e := range edges {
				if err := e.Add(l.bundle(q)); err != nil {
					t.Fatalf("edge %d: add period %d: %v", i, q, err)
				}
			}
		}
		untilTrue(l.sched.At(p).ReleaseAt)
	}
	untilTrue(l.sched.At(n-1).ReleaseAt + int64(period))
	wait.Until(stragglers, func() bool { return delivered(recs, ps) })

	// The bound each edge's clock stated at each release, as the edge
	// reported it.
	stated := make([]map[uint64]time.Duration, len(edges))
	for i, e := range edges {
		stated[i] = map[uint64]time.Duration{}
		for _, r := range e.Reports() {
			if r.Clock.State == ptp.StateUnsynchronized || r.Clock.Uncertainty() <= 0 {
				t.Errorf("%s: period %d released on a reading that states no bound: %+v", srcs[i].Name(), r.Period, r.Clock)
			}
			stated[i][r.Period] = r.Clock.Uncertainty()
		}
	}
	var skews, sums []time.Duration
	within := 0
	for _, p := range ps {
		a, okA := edges[0].FirstSend(p)
		b, okB := edges[1].FirstSend(p)
		if !okA || !okB {
			t.Errorf("period %d: chrony edge sent %v, ptp4l edge sent %v", p, okA, okB)
			continue
		}
		skew, sum := time.Duration(a-b).Abs(), stated[0][p]+stated[1][p]
		skews, sums = append(skews, skew), append(sums, sum)
		if skew <= sum {
			within++
		}
	}
	var line []string
	for i, e := range edges {
		early, late, sent := sendSpread(l, e, ps)
		if early > 0 {
			t.Errorf("%s: a RELEASE was sent %v before releaseAt", srcs[i].Name(), early)
		}
		if uint64(sent) != n {
			t.Errorf("%s: released %d of %d periods", srcs[i].Name(), sent, n)
		}
		b := slices.Sorted(maps.Values(stated[i]))
		line = append(line, fmt.Sprintf("%s edge: %d/%d sent, up to %v early, latest +%v, stated bound p50 %v max %v, %d holds",
			[]string{"chrony", "ptp4l"}[i], sent, n, early, late.Round(time.Microsecond),
			bench.Percentile(b, 50).Round(time.Microsecond), bench.Percentile(b, 100).Round(time.Microsecond), e.Stats().Holds))
	}
	v := l.judge(recs, ps)
	if !v.ok() {
		t.Errorf("receivers: %+v", v)
	}
	slices.Sort(skews)
	slices.Sort(sums)
	result(t, "%d receivers × %d periods, %d missing, %d early; %s; send skew across the edges p50 %v max %v against the sum of their stated bounds p50 %v (min %v): within it in %d of %d periods",
		len(recs), n, v.missing, v.early, line[0]+"; "+line[1],
		bench.Percentile(skews, 50).Round(time.Microsecond), bench.Percentile(skews, 100).Round(time.Microsecond),
		bench.Percentile(sums, 50).Round(time.Microsecond), bench.Percentile(sums, 0).Round(time.Microsecond), within, len(skews))
}
