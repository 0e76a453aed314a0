package edge_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
)

// TestReportCarriesBound: the edge's clock is a daemon source fed by a
// scripted daemon whose own estimate grows with every answer (one a
// second, its data 300 ms old when it answers) and which, for one answer,
// does not vouch for its clock. Every release's report — and its log line
// — carries the source's name and the very reading that ended the
// commit-wait: equal to what the source gives at that instant, never
// below the daemon's estimate then in force, widened by its data's age,
// with Earliest at or past releaseAt. The period due while the daemon
// does not vouch holds and goes out, with its bound, once it does again.
func TestReportCarriesBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const periods, unsynced = 6, 3 // the daemon's 4th answer (at 3 s) does not vouch
		f := newFixture(t)
		base := ptp.NewSim()
		var answers, estimate atomic.Int64
		src, err := daemon.OpenFunc("scripted", func() (daemon.Estimate, error) {
			n := answers.Add(1) - 1
			est := time.Duration(100+40*n) * time.Microsecond
			estimate.Store(int64(est))
			return daemon.Estimate{Synced: n != unsynced, Summary: fmt.Sprintf("answer %d", n), Bound: est,
				DataTAI: base.True() - int64(300*time.Millisecond), Interval: time.Second}, nil
		}, daemon.WithBase(base), daemon.WithPoll(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		t0 := base.True() // the daemon answers at t0 + k s

		type check struct {
			r      edge.Report
			now    ptp.Reading
			status daemon.Status
			est    time.Duration
		}
		var checks []check // appended on the release goroutine, read after stop
		// Read once Run has returned: nothing writes it any more.
		var logs bytes.Buffer
		e := newEdge(t, edge.Config{
			Clock: src, ClockSource: src.Name(), Trusted: f.ring, Senders: []edge.Sender{&edgetest.Sender{True: base.True}},
			Lead: 200 * time.Millisecond, Repeat: 1, Retry: 70 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			OnRelease: func(r edge.Report) {
				// Repeat 1: the report comes at the instant of the first
				// send, before virtual time moves on.
				now, err := src.Now()
				if err != nil {
					t.Error(err)
				}
				checks = append(checks, check{r, now, src.Status(), time.Duration(estimate.Load())})
			},
		})
		for p := range uint64(periods) {
			// Half-way between two answers, so that no release shares an
			// instant with the daemon's poll.
			if err := e.Add(f.bundle(t, 1, p, t0+int64(p)*int64(time.Second)+500*ms)); err != nil {
				t.Fatal(err)
			}
		}
		stop := start(t, e)
		sleepUntil(t0 + periods*int64(time.Second) + 500*ms)
		stop()

		if len(checks) != periods {
			t.Fatalf("%d releases reported, want %d", len(checks), periods)
		}
		for _, c := range checks {
			r := c.r
			if r.ClockSource != "scripted" {
				t.Errorf("period %d: clock source %q, want scripted", r.Period, r.ClockSource)
			}
			if r.Clock != c.now {
				t.Errorf("period %d: reported reading %+v, the source gave %+v at that instant", r.Period, r.Clock, c.now)
			}
			if r.Clock.State != ptp.StateSynchronized || r.Clock.Earliest < r.ReleaseAt || r.Lateness != time.Duration(r.Clock.Earliest-r.ReleaseAt) {
				t.Errorf("period %d: released on %v reading [%d, %d] for releaseAt %d, lateness %v", r.Period, r.Clock.State, r.Clock.Earliest, r.Clock.Latest, r.ReleaseAt, r.Lateness)
			}
			if b := r.Clock.Uncertainty(); b <= c.est || b != c.status.Bound {
				t.Errorf("period %d: bound %v, want above the daemon's %v (widened with age) and equal to the source's %v", r.Period, b, c.est, c.status.Bound)
			}
			if r.Clock.DataAge != c.status.DataAge || r.Clock.DataAge < 300*time.Millisecond {
				t.Errorf("period %d: data age %v, source says %v, want ≥ 300ms", r.Period, r.Clock.DataAge, c.status.DataAge)
			}
			if held := r.Period == unsynced; held != (r.Held > 0) {
				t.Errorf("period %d: held %d times", r.Period, r.Held)
			}
		}
		var maxBound, maxAge time.Duration
		for _, c := range checks {
			maxBound, maxAge = max(maxBound, c.r.Clock.Uncertainty()), max(maxAge, c.r.Clock.DataAge)
		}
		if st := e.Stats(); st.MaxBound != maxBound || st.MaxClockAge != maxAge {
			t.Errorf("stats: widest bound %v, oldest data %v; the reports say %v and %v", st.MaxBound, st.MaxClockAge, maxBound, maxAge)
		}
		out := logs.String()
		for _, c := range checks {
			want := fmt.Sprintf("period=%d lateness=%v held=%d copies=1 clock=scripted bound=%v data_age=%v",
				c.r.Period, c.r.Lateness, c.r.Held, c.r.Clock.Uncertainty(), c.r.Clock.DataAge)
			if !strings.Contains(out, want) {
				t.Errorf("no log line with %q in:\n%s", want, out)
			}
		}
	})
}
