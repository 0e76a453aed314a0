//go:build linux

package faults

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
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
	// loadSubscribers is the crowd: issue 9's 50,000, in a race build too.
	// -race slows the handshake (2.5–9 s on the two-core VM, against under
	// 1 s) but hardly the fan-out, which is the kernel's work; TestLoad
	// then takes 15–19 s.
	loadSubscribers = 50_000
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
	// loadSkewBudget is DESIGN.md's all-at-once target; the RESULT line
	// counts the periods over it. It is not asserted: unicast skew is the
	// fan-out pass's length, which anything else on a shared two-core
	// machine stretches (past 300 ms seen, 531 ms once beside other test
	// binaries), so it is a figure of the machine as much as of the edge.
	loadSkewBudget = 200 * time.Millisecond
	// loadMachineShare is the share of the machine's cores a calibration
	// spin must get for TestLoad to run. The test measures what one edge
	// does with this machine at 50,000 subscribers and a release a
	// second; with other processes holding the cores a fan-out pass takes
	// over a second (1.1 s seen with two busy loops beside -race), the
	// carousel cannot announce every period in time, and the figures and
	// misses would be the other processes'. It then skips, saying so.
	loadMachineShare = 0.75
	// loadStragglers is how long past the last presentAt the test waits
	// for receivers and the crowd that load has held back. Late is
	// reported; missing is asserted, because load may delay a period but
	// must not lose one. The wait ends as soon as everything is in.
	loadStragglers = 15 * time.Second
)

// TestLoad (issue 9, scenario 6): an edge with loadSubscribers unicast
// subscribers, made through the session protocol by a crowd host and kept
// alive by keepalives, and a multicast group, releases every second for
// ten periods (a minute with -faults.soak). Real receivers, on multicast
// and on unicast, must get every period with the origin's keys, never
// early; how far apart they got it (against the 200 ms target, see
// loadSkewBudget) and whether after presentAt is reported, not asserted.
// Every crowd member must get every period's ANNOUNCE and RELEASE, and
// stay subscribed. It reports the edge's send lateness and fan-out time, the
// receivers' skew, datagrams delivered against sent, and the process's
// CPU and peak memory while the test ran.
func TestLoad(t *testing.T) {
	realtime.Exclusive(t) // the suite saturates the CPUs: nothing real-time may run beside it
	n := 10               // periods; the crowd's per-member bitmaps hold 64
	if *loadSoak || os.Getenv("EMBARGO_SOAK") == "1" {
		n = 60
	}
	where := atCrowd
	switch *loadCount {
	case "arrival":
	case "uplink":
		where = atUplink
	default:
		t.Fatalf("-faults.crowdcount=%q: want arrival or uplink", *loadCount)
	}
	if share := machineShare(); share < loadMachineShare {
		t.Skipf("the machine is busy: a calibration spin got %.0f%% of %d cores (TestLoad needs %.0f%%: it measures what an edge can do with the machine)",
			100*share, runtime.NumCPU(), 100*loadMachineShare)
	}
	begin := time.Now()
	peakRSS := trackPeakRSS()
	l := newLab(t, loadRecvHosts+1, loadPeriod, loadLead, time.Hour) // the epoch is set once everyone is in
	crowdHost := l.net.Host(firstRecv + loadRecvHosts)
	spans := &sendSpans{m: map[spanKey]*span{}}
	e := l.startEdge(0, edgeOpts{
		unicast: true, senders: loadSenders, maxPerAddress: 1, wrapUnicast: spans.wrap,
		rounds: loadRounds, repeat: loadRepeat,
	})
	cr := newCrowd(t, crowdHost, l.edgeHost(0), l.edgeAddr(0), loadSubscribers, where)
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
	cpu0, w0 := processCPU(), time.Now()
	untilTrue(l.sched.At(uint64(n-1)).PresentAt + int64(100*time.Millisecond))
	cpu, wall := processCPU()-cpu0, time.Since(w0)
	wait.Until(loadStragglers, func() bool { return len(e.Reports()) == n && delivered(recs, ps) })
	stopKeepalives()

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

	// The receivers' side: per period, last arrival − first (skew) and
	// last arrival − releaseAt.
	v := l.judge(recs, ps)
	skewOf := map[uint64]time.Duration{}
	var arrLate []time.Duration
	for _, p := range ps {
		var arr []int64
		for _, rec := range recs {
			if ev, ok := rec.Event(p); ok {
				arr = append(arr, ev.Arrival)
			}
		}
		if len(arr) > 0 {
			skewOf[p] = time.Duration(slices.Max(arr) - slices.Min(arr))
			arrLate = append(arrLate, time.Duration(slices.Max(arr)-l.sched.At(p).ReleaseAt))
		}
	}
	skew := slices.Sorted(maps.Values(skewOf))
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
	for i := range loadSubscribers {
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

	slices.Sort(late)
	slices.Sort(fan)
	slices.Sort(arrLate)
	// pc(d, 100) is d's max, 0 if d is empty.
	pc := func(d []time.Duration, p int) time.Duration {
		return bench.Percentile(d, p).Round(10 * time.Microsecond)
	}
	over := 0
	for _, d := range skew {
		if d > loadSkewBudget {
			over++
		}
	}
	result(t, "%d unicast subscribers (subscribed through the protocol in %v, +%d real) and %d multicast receivers, %d periods of %v, %d senders, rounds %d × %d shards, repeat %d, lead %v, %s; "+
		"lateness p50 %v p99 %v max %v; fan-out p50 %v max %v; receiver skew p50 %v max %v, %d of %d periods over %v (arrival−releaseAt max %v); "+
		"early %d, missing %d, late %d, wrong keys %d; crowd missing ANNOUNCE %d RELEASE %d member-periods; "+
		"unicast datagrams sent %d (%.0f per %v period, %d errors), crowd got %d of %d (ANNOUNCE %d, RELEASE %d; %v); "+
		"process CPU %v in %v (%.2f cores), peak RSS while the test ran %s; setup %v",
		loadSubscribers, joinTook.Round(time.Millisecond), loadRecvHosts, loadRecvHosts, n, loadPeriod, loadSenders, loadRounds, shards, loadRepeat, loadLead, buildName(),
		pc(late, 50), pc(late, 99), pc(late, 100), pc(fan, 50), pc(fan, 100), pc(skew, 50), pc(skew, 100), over, len(skew), loadSkewBudget, pc(arrLate, 100),
		v.early+earlySends, v.missing, v.late, v.wrongKeys, missAnn, missRel,
		st.Sent, float64(st.Sent)/float64(n), loadPeriod, st.SendErrors, ann+rel, toCrowd, ann, rel, where,
		cpu.Round(time.Millisecond), wall.Round(time.Millisecond), cpu.Seconds()/wall.Seconds(), peakRSS(), setup.Round(time.Millisecond))
	t.Logf("per period:%s", perPeriod.String())
	t.Logf("crowd sessions: %s; UDP receive-buffer drops since the lab was built: edge %s, crowd %s",
		cr.report(), rcvbufErrors(l.edgeHost(0)), rcvbufErrors(crowdHost))

	// The edge's send lateness, opened after presentAt and skew are in the
	// RESULT line: load excuses them. Nothing excuses an early, missing or
	// wrong key.
	if !v.ok() || earlySends != 0 {
		t.Errorf("receivers: %+v, early sends %d", v, earlySends)
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
	return intercept(s, func(typ wire.Type, dgs [][]byte) (int, error) {
		t0 := truth()
		n, err := s.Send(typ, dgs)
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
	of := func(typ wire.Type) string {
		sp := ss.m[spanKey{typ, p}]
		if sp == nil {
			return typ.String() + " never"
		}
		return fmt.Sprintf("%v %v…%v", typ, rel(sp.start), rel(sp.end))
	}
	return of(wire.TypeAnnounce) + " " + of(wire.TypeRelease)
}

// buildName names the build in the RESULT line: the race detector
// changes the timings.
func buildName() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return "race build"
			}
		}
	}
	return "plain build"
}

// processCPU is the process's user+system CPU time so far.
// machineShare spins one goroutine per core for 200 ms and returns the
// share of those cores' time the process got.
func machineShare() float64 {
	const d = 200 * time.Millisecond
	cpu0, start := processCPU(), time.Now()
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for time.Since(start) < d {
			}
		})
	}
	wg.Wait()
	return float64(processCPU()-cpu0) / float64(time.Since(start)*time.Duration(runtime.NumCPU()))
}

func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// trackPeakRSS hands what memory it can back to the OS and restarts the
// kernel's record of the process's peak resident set (VmHWM, Linux ≥ 4.0)
// from what is left, so that earlier tests' peaks are not counted. The
// func it returns says the peak since, for a RESULT line.
func trackPeakRSS() func() string {
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return func() string { return fmt.Sprintf("unmeasured (%v)", err) }
	}
	return func() string {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return fmt.Sprintf("unmeasured (%v)", err)
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return fmt.Sprintf("unmeasured (%v)", err)
				}
				return fmt.Sprintf("%d MiB", kb>>10)
			}
		}
		return "unmeasured (no VmHWM)"
	}
}

// rcvbufErrors says h's UDP RcvbufErrors (/proc/net/snmp): datagrams
// dropped for a full socket receive buffer.
func rcvbufErrors(h *netns.Host) string {
	var out string
	err := h.Do(func() error {
		// /proc/net follows the main thread's namespace; thread-self
		// follows this one, which Do switched.
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			switch {
			case len(f) == 0 || f[0] != "Udp:":
			case names == nil:
				names = f
			default:
				if i := slices.Index(names, "RcvbufErrors"); i > 0 && i < len(f) {
					out = f[i]
					return nil
				}
			}
		}
		return errors.New("no Udp RcvbufErrors")
	})
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	return out
}
