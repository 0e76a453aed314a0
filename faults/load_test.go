//go:build linux

package faults

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/rig"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

var (
	loadSoak  = flag.Bool("faults.soak", false, "TestLoad releases for a minute (60 periods) instead of 10 (also EMBARGO_SOAK=1)")
	loadCount = flag.String("faults.crowdcount", "arrival", `where TestLoad counts the crowd's datagrams: "arrival" at the crowd host, or "uplink" as they leave the edge host, sparing the edge's CPUs the crowd's receive work`)
)

// The load scenario's event and edge settings.
const (
	loadPeriod    = time.Second
	loadLead      = edge.DefaultLead
	loadRecvHosts = 4 // each runs one multicast receiver and one unicast subscriber
	// The defaults cannot keep a 1 s period at 50,000 subscribers on two
	// cores: 4 rounds × 3 shards and 7 RELEASE copies are 19 passes over
	// every subscriber (950,000 datagrams) a period, and one pass takes
	// 80–150 ms here, 300–500 ms when the machine is shared. So: one
	// round (still all 3 shards, any one of which rebuilds the body) and
	// one copy, 4 passes a period. A second copy (5 passes) held in quiet
	// runs, but not under load. The default lead (2 s) puts each round a
	// period ahead of the release it serves, a period of slack for when
	// passes stretch: with 0.9 s, rounds sometimes ended after their
	// release, and a round that has not begun by then is never sent.
	loadRounds  = 1
	loadRepeat  = 1
	loadSenders = 2 // the server's default, runtime.NumCPU(), on the two-core VM
	// loadKeepalive is how often each crowd member renews its session,
	// under the edge's advertised 15 s.
	loadKeepalive = 10 * time.Second
	// loadSkewBudget is DESIGN.md's all-at-once target, which the median
	// period must meet. Unicast skew is the fan-out pass's length, which
	// other processes on a shared two-core machine stretch now and then
	// (past 300 ms seen), so any one period may take up to loadSkewCeiling;
	// the RESULT line counts the periods over budget. loadLateBudget
	// bounds the edge's own wake-up (commit-wait end − releaseAt).
	loadSkewBudget  = 200 * time.Millisecond
	loadSkewCeiling = 500 * time.Millisecond
	loadLateBudget  = 100 * time.Millisecond
)

// TestLoad (issue 9, scenario 6): an edge with loadSubscribers unicast
// subscribers, made through the session protocol by a crowd host and kept
// alive by keepalives, and a multicast group, releases every second for
// ten periods (a minute with -faults.soak). Real receivers, on multicast
// and on unicast, must get every period, never early, within 200 ms of
// each other in the median period (see loadSkewBudget); every crowd
// member must get every period's ANNOUNCE and RELEASE, and stay
// subscribed. It reports the edge's send lateness and fan-out time, the
// receivers' skew, datagrams delivered against sent, and the process's
// CPU and peak memory.
func TestLoad(t *testing.T) {
	n := 10
	if *loadSoak || os.Getenv("EMBARGO_SOAK") == "1" {
		n = 60
	}
	begin := time.Now()
	l := newLab(t, loadRecvHosts+1, loadPeriod, loadLead, time.Hour) // the epoch is set once everyone is in
	crowdHost := l.net.Host(firstRecv + loadRecvHosts)
	spans := &sendSpans{m: map[spanKey]*span{}}
	e := l.startLoadEdge(0, loadRounds, loadRepeat, loadSenders, spans)
	at := atCrowd
	switch *loadCount {
	case "arrival":
	case "uplink":
		at = atUplink
	default:
		t.Fatalf("-faults.crowdcount=%q: want arrival or uplink", *loadCount)
	}
	cr := newCrowd(t, crowdHost, l.edgeHost(0), l.edgeAddr(0), loadSubscribers, at)
	var recs []*recorder
	for i := range loadRecvHosts {
		h := l.recvHost(i)
		recs = append(recs, l.startReceiver(l.multicast(h)), l.startReceiver(l.subscribe(h, 0, 0)))
	}

	t0 := time.Now()
	subscribed := cr.subscribe(60 * time.Second)
	joinTook := time.Since(t0)
	if subscribed < loadSubscribers {
		t.Fatalf("%d of %d crowd members subscribed in %v: %s", subscribed, loadSubscribers, joinTook, cr.report())
	}
	stopKeepalives := cr.keepAlive(loadKeepalive)
	want := loadSubscribers + loadRecvHosts
	for deadline := time.Now().Add(10 * time.Second); e.Server.Sessions().Stats().Subscribers < want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d subscribers on the edge", e.Server.Sessions().Stats().Subscribers, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	setup := time.Since(begin)

	// The event: period 0's carousel starts 200 ms from now.
	l.sched.Epoch = truth() + int64(loadLead+200*time.Millisecond)
	ps := periods(0, uint64(n))
	for _, p := range ps {
		if err := e.Add(l.bundle(p)); err != nil {
			t.Fatalf("add period %d: %v", p, err)
		}
	}
	shards := len(l.bundle(0).Shards)
	u0, w0 := getUsage(), time.Now()
	untilTrue(l.sched.At(uint64(n-1)).PresentAt + int64(100*time.Millisecond))
	u1, wall := getUsage(), time.Since(w0)
	stopKeepalives()
	edgeUDP, crowdUDP := udpStats(l.edgeHost(0)), udpStats(crowdHost)

	// The edge's side.
	reps := e.Reports()
	slices.SortFunc(reps, func(a, b edge.Report) int { return cmp.Compare(a.Period, b.Period) })
	var late, fan []time.Duration
	earlySends := 0
	for _, r := range reps {
		late, fan = append(late, r.Lateness), append(fan, r.FanOut)
		if r.Copies != loadRepeat {
			t.Errorf("period %d: %d of %d copies sent", r.Period, r.Copies, loadRepeat)
		}
		if at, ok := e.FirstSend(r.Period); !ok || at < r.ReleaseAt {
			earlySends++
		}
	}
	if len(reps) != n {
		t.Errorf("edge reported %d of %d releases", len(reps), n)
	}
	st := e.Server.Stats()

	// The receivers' side.
	v := l.judge(recs, ps)
	var skew, arrLate []time.Duration
	skewOf := map[uint64]time.Duration{}
	for _, p := range ps {
		at := l.sched.At(p).ReleaseAt
		var arr []int64
		for _, rec := range recs {
			if ev, ok := rec.Event(p); ok {
				arr = append(arr, ev.Arrival)
			}
		}
		if len(arr) == 0 {
			continue
		}
		skewOf[p] = time.Duration(slices.Max(arr) - slices.Min(arr))
		skew = append(skew, skewOf[p])
		arrLate = append(arrLate, time.Duration(slices.Max(arr)-at))
	}
	var perPeriod strings.Builder
	for _, r := range reps {
		fmt.Fprintf(&perPeriod, "\n%d: lateness %v fan-out %v", r.Period, r.Lateness.Round(time.Microsecond), r.FanOut.Round(time.Millisecond))
		if d, ok := skewOf[r.Period]; ok {
			fmt.Fprintf(&perPeriod, " skew %v", d.Round(time.Millisecond))
		}
		fmt.Fprintf(&perPeriod, "; unicast %s", spans.describe(r.Period, r.ReleaseAt))
	}

	// The crowd's side: every member, every period, both messages.
	var all uint64
	for _, p := range ps {
		all |= 1 << (p % 64)
	}
	var missAnn, missRel int
	for i := range subscribed {
		if cr.count.periodsSeen(crowdAnnounce, i)&all != all {
			missAnn++
		}
		if cr.count.periodsSeen(crowdRelease, i)&all != all {
			missRel++
		}
	}
	ann, rel := cr.count.total(crowdAnnounce), cr.count.total(crowdRelease)
	// Everyone was subscribed before the first datagram, so the crowd's
	// share of what the server sent is exact.
	toCrowd := st.Sent * uint64(loadSubscribers) / uint64(want)

	for _, d := range [][]time.Duration{late, fan, skew, arrLate} {
		slices.Sort(d)
	}
	pc := func(d []time.Duration, p int) time.Duration { return rig.Percentile(d, p).Round(10 * time.Microsecond) }
	mx := func(d []time.Duration) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return slices.Max(d).Round(10 * time.Microsecond)
	}
	cpu := u1.cpu - u0.cpu
	over := 0
	for _, d := range skew {
		if d > loadSkewBudget {
			over++
		}
	}
	result(t, "%d unicast subscribers (%d subscribed through the protocol in %v, +%d real) and %d multicast receivers, %d periods of %v, %d senders, rounds %d × %d shards, repeat %d, lead %v, %s; "+
		"lateness p50 %v p99 %v max %v; fan-out p50 %v max %v; receiver skew p50 %v max %v, %d of %d periods over %v (arrival−releaseAt max %v); "+
		"early %d, missing %d, late %d, wrong keys %d; crowd missing ANNOUNCE %d RELEASE %d member-periods; "+
		"unicast datagrams sent %d (%.0f per %v period, %d errors), crowd got %d of %d (ANNOUNCE %d, RELEASE %d; %v); "+
		"CPU %v in %v (%.2f cores), peak RSS %d MiB; setup %v",
		loadSubscribers, subscribed, joinTook.Round(time.Millisecond), loadRecvHosts, loadRecvHosts, n, loadPeriod, loadSenders, loadRounds, shards, loadRepeat, loadLead, loadBuild,
		pc(late, 50), pc(late, 99), mx(late), pc(fan, 50), mx(fan), pc(skew, 50), mx(skew), over, len(skew), loadSkewBudget, mx(arrLate),
		v.early+earlySends, v.missing, v.late, v.wrongKeys, missAnn, missRel,
		st.Sent, float64(st.Sent)/float64(n), loadPeriod, st.SendErrors, ann+rel, toCrowd, ann, rel, at,
		cpu.Round(time.Millisecond), wall.Round(time.Millisecond), cpu.Seconds()/wall.Seconds(), u1.maxRSS>>20, setup.Round(time.Millisecond))
	t.Logf("per period:%s", perPeriod.String())
	t.Logf("crowd sessions: %s; UDP receive-buffer drops: edge %d, crowd %d", cr.report(), edgeUDP["RcvbufErrors"], crowdUDP["RcvbufErrors"])

	if v != (verdict{}) || earlySends != 0 {
		t.Errorf("receivers: %+v, early sends %d", v, earlySends)
	}
	if mx(late) > loadLateBudget {
		t.Errorf("send lateness max %v over %v", mx(late), loadLateBudget)
	}
	if p50 := pc(skew, 50); p50 > loadSkewBudget || mx(skew) > loadSkewCeiling {
		t.Errorf("receiver skew p50 %v (budget %v), max %v (ceiling %v)", p50, loadSkewBudget, mx(skew), loadSkewCeiling)
	}
	if missAnn != 0 || missRel != 0 {
		t.Errorf("crowd members missing a period: ANNOUNCE %d, RELEASE %d", missAnn, missRel)
	}
	if st.SendErrors != 0 {
		t.Errorf("%d send errors", st.SendErrors)
	}
	if u := cr.unknownSession.Load(); u != 0 {
		t.Errorf("%d crowd keepalives answered unknown-session", u)
	}
}

// startLoadEdge is startEdge with the load's settings: a unicast server
// with senders sockets and room for the crowd (its sends timed into
// spans), multicast on the group, the true clock ±1 µs.
func (l *lab) startLoadEdge(i, rounds, repeat, senders int, spans *sendSpans) *runningEdge {
	l.t.Helper()
	h := l.edgeHost(i)
	clock := ptp.NewSim(ptp.WithUncertainty(time.Microsecond, 0))
	re := &runningEdge{done: make(chan error, 1), firstSend: map[uint64]int64{}}
	var ss []edge.Sender
	var closers []func() error
	err := h.Do(func() error {
		s, err := udp.NewSender(group(h))
		if err != nil {
			return err
		}
		ss, closers = append(ss, re.watch(s)), append(closers, s.Close)
		srv, err := unicast.NewServer(unicast.ServerConfig{
			Listen: l.edgeAddr(i), Clock: clock, Senders: senders,
			Sessions: unicast.SessionConfig{Streams: []uint32{stream}, MaxPerAddress: 1, MaxSubscribers: 1 << 17},
		})
		if err != nil {
			return err
		}
		re.Server = srv
		ss, closers = append(ss, re.watch(spans.wrap(srv))), append(closers, srv.Close)
		return nil
	})
	if err != nil {
		l.t.Fatalf("edge %d: %v", i, err)
	}
	e, err := edge.New(edge.Config{
		ID: uint32(i + 1), Clock: clock, Trusted: l.ring, Senders: ss,
		Lead: l.sched.Lead, Rounds: rounds, Repeat: repeat,
		OnRelease: func(r edge.Report) { re.mu.Lock(); re.reports = append(re.reports, r); re.mu.Unlock() },
	})
	if err != nil {
		l.t.Fatal(err)
	}
	re.Edge = e
	re.run(l.t, closers)
	return re
}

// sendSpans times an edge's sends through one sender, per message type
// and period: when the first began and the last ended (true time).
type sendSpans struct {
	mu sync.Mutex
	m  map[spanKey]*span
}

type spanKey struct {
	typ    wire.Type
	period uint64
}

type span struct{ start, end int64 }

func (ss *sendSpans) wrap(s edge.Sender) edge.Sender {
	return sendFunc(func(dgs [][]byte) (int, error) {
		t0 := truth()
		n, err := s.Send(dgs)
		t1 := truth()
		ss.mu.Lock()
		defer ss.mu.Unlock()
		for _, d := range dgs {
			h, perr := wire.Peek(d)
			if perr != nil {
				continue
			}
			k := spanKey{h.Type, h.Period}
			if ss.m[k] == nil {
				ss.m[k] = &span{start: t0}
			}
			ss.m[k].end = t1
		}
		return n, err
	})
}

// describe says when period p's ANNOUNCE and RELEASE sends began and
// ended, relative to its releaseAt.
func (ss *sendSpans) describe(p uint64, releaseAt int64) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	rel := func(at int64) time.Duration { return time.Duration(at - releaseAt).Round(time.Millisecond) }
	var b strings.Builder
	for _, typ := range []wire.Type{wire.TypeAnnounce, wire.TypeRelease} {
		name := "ANNOUNCE"
		if typ == wire.TypeRelease {
			name = " RELEASE"
		}
		if sp := ss.m[spanKey{typ, p}]; sp != nil {
			fmt.Fprintf(&b, "%s %v…%v", name, rel(sp.start), rel(sp.end))
		} else {
			fmt.Fprintf(&b, "%s never", name)
		}
	}
	return b.String()
}
