//go:build linux

package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
)

// joiner is a receiver that started mid-event, with what it asked for and
// when, by the true clock.
type joiner struct {
	name    string
	rec     *recorder
	rels    *releaseLog // RELEASEs read on its unicast sources
	catchUp int         // periods asked for; 0: multicast only
	// joined is just before its sockets opened, subscribed when every
	// unicast session was up (joined for multicast only).
	joined, subscribed int64
}

// join starts a receiver on h subscribed by unicast to edges with catchUp,
// and on the group too if multicast, and waits for its sessions.
func (l *lab) join(name string, h *netns.Host, edges []int, catchUp int, multicast bool) *joiner {
	l.t.Helper()
	j := &joiner{name: name, rels: &releaseLog{}, catchUp: catchUp, joined: truth()}
	var srcs []receiver.Source
	var clients []*subscriber.Client
	if multicast {
		srcs = append(srcs, l.multicast(h))
	}
	for _, i := range edges {
		c := l.subscribe(h, i, catchUp)
		clients = append(clients, c)
		srcs = append(srcs, tapReleases(c, j.rels))
	}
	j.rec = l.startReceiver(srcs...)
	wait.For(l.t, 5*time.Second, name+" subscribed", func() bool { return subscribed(clients) })
	j.subscribed = truth()
	return j
}

// catchUpVerdict is what one late joiner saw, judged against the schedule
// and the true clock.
type catchUpVerdict struct {
	newest      int64         // newest period caught up (−1: none)
	caught      int           // periods delivered as catch-up
	live        int           // later periods delivered live
	early       int           // events up to newest or RELEASE datagrams before releaseAt, or unstamped
	beyond      int           // catch-up of a period not released at subscription
	older       int           // periods older than the catch-up window delivered
	holes       int           // periods in the window not delivered
	wrongKeys   int           // periods up to newest delivered with keys not the origin's
	slow        time.Duration // latest catch-up event after joining
	liveVerdict verdict       // the periods after newest (lab.judge)
}

// judgeCatchUp checks a joiner that asked for j.catchUp periods and
// subscribed between j.joined and j.subscribed: it got (as catch-up, or
// live if a live copy came first) exactly the last j.catchUp periods
// released when its subscription was handled (that is, by j.subscribed,
// and at least all released slack before j.joined), with the origin's
// keys, every later period up to end live (lab.judge), and nothing before
// its releaseAt — events, or RELEASE datagrams on its unicast sources —
// nor older than its window.
func (l *lab) judgeCatchUp(j *joiner, end uint64, slack time.Duration) catchUpVerdict {
	v := catchUpVerdict{newest: -1}
	for n := range end {
		if ev, ok := j.rec.Event(n); ok && ev.CatchUp {
			v.caught++
			v.newest = max(v.newest, int64(n))
			v.slow = max(v.slow, time.Duration(ev.Opened-j.joined))
		}
	}
	// A period whose release was under way when the session came up is
	// served by catch-up too, and a live copy may then open it first: the
	// catch-up RELEASE datagrams say what the edge caught it up on.
	seen, stampless, bad := j.rels.all()
	for _, r := range seen {
		if r.CatchUp {
			v.newest = max(v.newest, int64(r.Period))
		}
	}
	// The newest period the edge may have caught it up on: released by the
	// true clock when its session was up. The oldest it must have: released
	// slack before it joined.
	if v.newest > l.newestReleased(j.subscribed) {
		v.beyond++
	}
	newest := max(v.newest, l.newestReleased(j.joined-int64(slack)))
	oldest := max(newest-int64(j.catchUp)+1, 0)
	// Older than the window is judged against the window the edge served:
	// an edge that load made release the newest period later than slack
	// serves the catch-up periods before it, which is right.
	windowStart := oldest
	if v.newest >= 0 {
		windowStart = min(oldest, max(v.newest-int64(j.catchUp)+1, 0))
	}

	v.early = stampless + bad
	for _, r := range seen {
		if l.early(r) {
			v.early++
		}
		if r.CatchUp && int64(r.Period) < windowStart {
			v.older++
		}
	}
	var later []uint64
	for n := range end {
		ev, ok := j.rec.Event(n)
		if int64(n) > newest {
			later = append(later, n)
			if ok && !ev.CatchUp {
				v.live++
			}
			continue
		}
		if !ok {
			if int64(n) >= oldest {
				v.holes++
			}
			continue
		}
		if int64(n) < windowStart {
			v.older++
		}
		if l.earlyEvent(ev) {
			v.early++
		}
		if !slices.Equal(ev.Keys, l.keysOf(n)) {
			v.wrongKeys++
		}
	}
	v.liveVerdict = l.judge([]*recorder{j.rec}, later)
	return v
}

// newestReleased is the newest period whose releaseAt is at or before t
// (−1: none).
func (l *lab) newestReleased(t int64) int64 {
	if t < l.sched.Epoch {
		return -1
	}
	return int64(l.sched.Current(t))
}

func (v catchUpVerdict) ok() bool {
	return v.early == 0 && v.beyond == 0 && v.older == 0 && v.holes == 0 && v.wrongKeys == 0 && v.liveVerdict.ok()
}

func (v catchUpVerdict) String() string {
	return fmt.Sprintf("caught up %d (newest %d) within %v, live %d, missing %d, early %d, beyond %d, older %d, wrong keys %d, live verdict %+v",
		v.caught, v.newest, v.slow.Round(time.Millisecond), v.live, v.holes, v.early, v.beyond, v.older, v.wrongKeys, v.liveVerdict)
}

// TestCatchUp: receivers that join or restart mid-event catch up on the
// periods already released, within their catch-up window and promptly,
// get every later one live, and are never given a period early or one
// older than they asked for.
func TestCatchUp(t *testing.T) {
	realtime.Exclusive(t) // the suite saturates the CPUs: nothing real-time may run beside it
	const (
		period = 400 * time.Millisecond
		lead   = time.Second
		end    = 16
		// slack is how late an edge may release and still count as
		// having released when a joiner arrived.
		slack = 150 * time.Millisecond
		// prompt bounds how long after joining a joiner's catch-up may
		// take. It comes as soon as the session is up: milliseconds on an
		// idle machine, over a second seen with the cores taken by other
		// work. 5 s still tells that from a catch-up that waits for the
		// client's next keepalive (15 s), the failure this guards.
		prompt = 5 * time.Second
	)
	l := newLab(t, 4, period, lead, 1200*time.Millisecond)
	ps := periods(0, end)
	offsets := []time.Duration{800 * time.Microsecond, -500 * time.Microsecond}
	for i, off := range offsets {
		l.feed(l.startEdge(i, edgeOpts{clock: offsetClock(off, time.Millisecond), unicast: true}), 0, end, 20*time.Millisecond)
	}
	at := func(n uint64) int64 { return l.sched.At(n).ReleaseAt }

	// From the start: a multicast receiver, a unicast one over both edges,
	// and one over both that will restart.
	base := []*recorder{
		l.startReceiver(l.multicast(l.recvHost(0))),
		l.join("base-unicast", l.recvHost(1), []int{0, 1}, 0, false).rec,
	}
	before := l.join("restart-before", l.recvHost(2), []int{1}, 4, true)

	// Late joiners mid-period: one asking for less than was released, one
	// for more.
	untilTrue(at(4) + int64(period/2))
	late := []*joiner{
		l.join("late-3", l.recvHost(1), []int{0}, 3, false),
		l.join("late-16", l.recvHost(2), []int{1}, 16, false),
	}
	// Joiners just before a release: that period is announced, taken for
	// release, and must come at releaseAt, live or as catch-up, never
	// before.
	untilTrue(at(7) - int64(10*time.Millisecond))
	edgeOf := []*joiner{
		l.join("at-release-e1", l.recvHost(3), []int{0}, 2, false),
		l.join("at-release-e2", l.recvHost(0), []int{1}, 2, true),
	}
	// The restarting receiver goes down after period 9 and comes back
	// after 11 on fresh sockets.
	untilTrue(at(9) + int64(period/4))
	wait.For(t, time.Second, "restarting receiver has period 9", func() bool { _, ok := before.rec.Event(9); return ok })
	before.rec.stop()
	// A multicast-only joiner: it has no way to ask for catch-up.
	untilTrue(at(10) + int64(period/2))
	mcast := l.join("multicast-only", l.recvHost(3), nil, 0, true)
	untilTrue(at(11) + int64(period/4))
	after := l.join("restart-after", l.recvHost(2), []int{1}, 4, true)

	last := l.sched.At(end - 1)
	untilTrue(last.ReleaseAt)
	all := slices.Concat(base, []*recorder{mcast.rec, after.rec}, recsOf(late), recsOf(edgeOf))
	wait.For(t, time.Duration(last.PresentAt-truth())+stragglers, "every receiver has the last period", func() bool {
		return delivered(all, []uint64{end - 1})
	})

	t.Run("baseline", func(t *testing.T) {
		v := l.judge(base, ps)
		result(t, "%d receivers from the start, %d periods: %+v", len(base), len(ps), v)
		if !v.ok() {
			t.Error(v)
		}
	})
	t.Run("late-joiners", func(t *testing.T) {
		var lines []string
		for _, j := range late {
			v := l.judgeCatchUp(j, end, slack)
			lines = append(lines, fmt.Sprintf("%s: %v", j.name, v))
			checkCatchUp(t, j, v, prompt)
		}
		result(t, "joined mid-period 4 by unicast: %s", strings.Join(lines, "; "))
	})
	t.Run("join-at-release", func(t *testing.T) {
		var lines []string
		for _, j := range edgeOf {
			v := l.judgeCatchUp(j, end, slack)
			lines = append(lines, fmt.Sprintf("%s (subscribed %+.1fms from releaseAt 7): %v", j.name, float64(j.subscribed-at(7))/1e6, v))
			checkCatchUp(t, j, v, prompt)
		}
		result(t, "joined 10ms before period 7's release: %s", strings.Join(lines, "; "))
	})
	t.Run("restart", func(t *testing.T) {
		v := l.judgeCatchUp(after, end, slack)
		checkCatchUp(t, after, v, prompt)
		var gap []uint64
		for _, n := range ps {
			_, a := before.rec.Event(n)
			_, b := after.rec.Event(n)
			if !a && !b {
				gap = append(gap, n)
			}
		}
		if len(gap) > 0 {
			t.Errorf("periods lost across the restart: %v", gap)
		}
		result(t, "down from period 9 to 11, catch-up 4: %v; lost across the restart %d", v, len(gap))
	})
	t.Run("multicast-only", func(t *testing.T) {
		// Periods whose carousel starts after the join come live; those
		// released before it cannot come at all: multicast has no
		// catch-up, by design. Those announced before it may or may not.
		firstLive := l.sched.Current(mcast.joined+int64(lead)) + 1
		var got, partial, early, older, caught int
		for _, n := range ps {
			ev, ok := mcast.rec.Event(n)
			if !ok {
				continue
			}
			got++
			if ev.CatchUp {
				caught++
			}
			if l.earlyEvent(ev) {
				early++
			}
			if at(n) <= mcast.joined {
				older++
			} else if n < firstLive {
				partial++
			}
		}
		v := l.judge([]*recorder{mcast.rec}, periods(firstLive, end))
		result(t, "joined mid-period 10, no catch-up possible (by design): got %d periods, %d of %d announced before it joined, %d live from period %d on: %+v; early %d, released before join %d",
			got, partial, firstLive-l.sched.Current(mcast.joined)-1, end-firstLive, firstLive, v, early, older)
		if !v.ok() || early > 0 || older > 0 || caught > 0 {
			t.Errorf("multicast-only joiner: %+v, early %d, older %d, catch-up %d", v, early, older, caught)
		}
	})
}

func checkCatchUp(t *testing.T, j *joiner, v catchUpVerdict, prompt time.Duration) {
	t.Helper()
	if !v.ok() || v.slow > prompt {
		t.Errorf("%s (catch-up %d, joined %d, subscribed %d): %v", j.name, j.catchUp, j.joined, j.subscribed, v)
	}
}

func recsOf(js []*joiner) []*recorder {
	var out []*recorder
	for _, j := range js {
		out = append(out, j.rec)
	}
	return out
}
