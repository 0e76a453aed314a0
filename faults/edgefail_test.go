//go:build linux

package faults

import (
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
)

// TestEdgeFail: one edge dies just before a release, after announcing it;
// another is restarted mid-event and comes back with the bundles the
// origin gives it, including periods already past, which it keeps for
// catch-up and never releases live. Every receiver — on the
// group, or subscribed by unicast to two edges — still delivers every
// period on time with the right keys, and an independent capture of every
// RELEASE on the wire shows no edge, the restarted one included, sending
// one before its instant by the true clock.
func TestEdgeFail(t *testing.T) {
	realtime.Exclusive(t) // the suite saturates the CPUs: nothing real-time may run beside it
	const (
		period = 400 * time.Millisecond
		lead   = time.Second
		end    = 14
		// Edge 0 dies killBefore ahead of period kill's release: its
		// ANNOUNCE rounds are out, its RELEASE is not.
		kill       = 4
		killBefore = 5 * time.Millisecond
		// Edge 1 goes down after period down's release and comes back
		// after the next one's: that one falls while it is away.
		down = 7
		// prompt bounds how long after its restart the edge may take to
		// hold the periods already past for catch-up: at once, ms on an
		// idle machine, 1.1 s seen with the cores taken by other work; 5 s
		// still tells "at once" from "at the next period or keepalive".
		prompt = 5 * time.Second
	)
	l := newLab(t, 4, period, lead, 1500*time.Millisecond)
	ps := periods(0, end)
	at := func(n uint64) int64 { return l.sched.At(n).ReleaseAt }
	const poll = 20 * time.Millisecond

	// Three edges whose clocks are off true time by different amounts, each
	// within the 1 ms it states.
	offsets := []time.Duration{900 * time.Microsecond, -700 * time.Microsecond, 400 * time.Microsecond}
	edges := make([]*runningEdge, len(offsets))
	feeds := make([]func(), len(offsets))
	for i, off := range offsets {
		edges[i] = l.startEdge(i, edgeOpts{clock: offsetClock(off, time.Millisecond), unicast: true})
		feeds[i] = l.feed(edges[i], 0, end, poll)
	}

	// The wire, watched apart from any receiver: a plain socket on the
	// group, and the unicast sources of the two-edge receivers.
	onGroup := l.captureGroup(l.recvHost(0))
	unicastRels := &releaseLog{}
	var recs []*recorder
	for i := range 4 {
		recs = append(recs, l.startReceiver(l.multicast(l.recvHost(i))))
	}
	// Unicast receivers over two edges each; every pair has edge 2, which
	// neither dies nor restarts. (A subscriber learns that its edge
	// restarted only when its next keepalive is refused, 15 s by default:
	// until then its other edge carries it.)
	pairs := [][2]int{{0, 2}, {1, 2}, {2, 0}, {2, 1}}
	var clients []*subscriber.Client
	for i, p := range pairs {
		h := l.recvHost(i)
		a, b := l.subscribe(h, p[0], 0), l.subscribe(h, p[1], 0)
		clients = append(clients, a, b)
		recs = append(recs, l.startReceiver(tapReleases(a, unicastRels), tapReleases(b, unicastRels)))
	}
	wait.For(t, 5*time.Second, "unicast sessions", func() bool { return subscribed(clients) })

	// Kill edge 0 just before period kill's release.
	untilTrue(at(kill) - int64(killBefore))
	edges[0].stop()
	feeds[0]()
	killedAt := truth()
	var killedLast int64 = -1
	for _, r := range edges[0].Reports() {
		killedLast = max(killedLast, int64(r.Period))
	}

	// Restart edge 1: down after period down's release, back after the
	// next one's, fetching from the origin what an edge polling then gets.
	untilTrue(at(down) + int64(period/4))
	edges[1].stop()
	feeds[1]()
	untilTrue(at(down+1) + int64(period/4))
	restartedAt := truth()
	restarted := l.startEdge(1, edgeOpts{clock: offsetClock(950*time.Microsecond, time.Millisecond), unicast: true})
	l.feed(restarted, 0, end, poll)
	past := l.newestReleased(restartedAt) // periods 0…past were due before it came back
	// …and 0…pastFed before its first bundles (feed adds the first at once).
	pastFed := l.newestReleased(truth())

	// A fresh subscriber of the restarted edge asks for catch-up: it gets
	// the past periods the edge took into its history on its return.
	wait.For(t, prompt, "the restarted edge to hold the past periods", func() bool {
		rel := restarted.Released(stream)
		return len(rel) > 0 && int64(rel[len(rel)-1].Period) >= past
	})
	late := l.join("restarted-edge-subscriber", l.recvHost(3), []int{1}, 4, false)

	last := l.sched.At(end - 1)
	untilTrue(last.ReleaseAt)
	all := append(slices.Clone(recs), late.rec)
	wait.For(t, time.Duration(last.PresentAt-truth())+stragglers, "every receiver has the last period", func() bool {
		return delivered(all, []uint64{end - 1})
	})

	// An edge reports a release after its last copy.
	wait.For(t, stragglers, "the restarted edge's report of the last period", func() bool {
		return slices.ContainsFunc(restarted.Reports(), func(r edge.Report) bool { return r.Period == end-1 })
	})

	// Every receiver that was there from the start delivered every period,
	// never early, before presentAt, with the origin's keys.
	v := l.judge(recs, ps)
	if !v.ok() {
		t.Errorf("receivers: %+v", v)
	}
	// The subscriber of the restarted edge: the past periods as catch-up,
	// the rest live.
	cv := l.judgeCatchUp(late, end, 150*time.Millisecond)
	checkCatchUp(t, late, cv, prompt)

	// The wire: no RELEASE before its instant, from any edge; none from the
	// dead edge after it died; every one stamped by its edge at or after
	// the instant; none on the group flagged as catch-up.
	seen, stampless, bad := onGroup.all()
	useen, ustampless, ubad := unicastRels.all()
	if stampless+bad+ustampless+ubad > 0 {
		t.Errorf("RELEASEs without an arrival stamp: %d, undecodable: %d", stampless+ustampless, bad+ubad)
	}
	early, deadSent, caughtUp := 0, 0, 0
	for _, r := range slices.Concat(seen, useen) {
		if l.early(r) || r.SentAt < at(r.Period) {
			early++
			t.Errorf("RELEASE of period %d from edge %d arrived %v from its releaseAt (sentAt %+v)",
				r.Period, r.Edge, time.Duration(r.Arrival-at(r.Period)), time.Duration(r.SentAt-at(r.Period)))
		}
		if r.Edge == 1 && r.Arrival > killedAt {
			deadSent++
		}
	}
	for _, r := range seen {
		if r.CatchUp {
			caughtUp++
		}
	}
	if deadSent > 0 || caughtUp > 0 {
		t.Errorf("RELEASEs from the dead edge after it died: %d; catch-up copies on the group: %d", deadSent, caughtUp)
	}

	// The restarted edge (id 2 after restartedAt): it kept the past periods
	// it was given for catch-up and released none of them live — they
	// went out once, on time, and a RELEASE seconds late is a lie — and
	// released the later ones at their instants.
	back := func(r seenRelease) bool { return r.Edge == 2 && r.Arrival >= restartedAt }
	for _, r := range seen {
		if back(r) && int64(r.Period) <= past {
			t.Errorf("restarted edge: period %d, past when it came back, released live on the group %v after its instant",
				r.Period, time.Duration(r.Arrival-at(r.Period)))
		}
	}
	st := restarted.Stats()
	if st.Past < uint64(past+1) {
		t.Errorf("restarted edge: %d bundles counted past on arrival, want ≥ %d", st.Past, past+1)
	}
	reports := restarted.Reports()
	var liveLate time.Duration
	got := map[uint64]edge.Report{}
	for _, r := range reports {
		got[r.Period] = r
		if r.Lateness < 0 || r.Copies < 1 || int64(r.Period) <= past {
			t.Errorf("restarted edge: report %+v", r)
		}
		liveLate = max(liveLate, r.Lateness)
	}
	for _, n := range ps {
		if _, ok := got[n]; !ok && int64(n) > pastFed {
			t.Errorf("restarted edge: no report for period %d", n)
		}
	}

	spread := l.releaseSpread(seen, func(r seenRelease) bool { return !back(r) })
	spreadBack := l.releaseSpread(seen, back)
	result(t, "%d receivers (%d multicast, %d unicast over two edges, 1 subscribed to the restarted edge), %d periods; "+
		"edge e1 stopped %v before period %d's release (its last release: period %d), edge e2 down across period %d's release and restarted; "+
		"missing %d, early %d, late %d, wrong keys %d; RELEASEs captured %d on the group + %d unicast, %d early; "+
		"earliest arrival−releaseAt %s, restarted e2 %s; restarted edge kept periods 0–%d for catch-up (%d past on arrival, none released live), "+
		"later ones with lateness ≤ %v by its clock; its new subscriber: %v",
		len(all), len(recs)-len(pairs), len(pairs), len(ps), time.Duration(at(kill)-killedAt).Round(100*time.Microsecond), kill, killedLast, down+1,
		v.missing, v.early, v.late, v.wrongKeys, len(seen), len(useen), early,
		fmtSpread(spread), fmtSpread(spreadBack), past, st.Past, liveLate, cv)
}
