//go:build linux

package faults

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/syncbuf"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
)

// TestClockFaults: three edges release one event, each on a clock that
// goes wrong in its own way: one steps 50 ms ahead just before a release,
// one drifts at 2,000 ppm while claiming ±100 µs, one loses sync for two
// periods. Each clock is wrapped in the guard the edge command uses
// (ptp.Guard on the real CLOCK_MONOTONIC_RAW). The true time each RELEASE
// was handed to a socket must never precede releaseAt; every receiver
// must still get every period, on time; and each edge must say what is
// wrong on /readyz and in its log. The same step and drift without the
// guard are run as controls, to show the faults would make a release
// early.
func TestClockFaults(t *testing.T) {
	realtime.Exclusive(t) // the suite saturates the CPUs: nothing real-time may run beside it
	const n = 9
	period, lead := 400*time.Millisecond, 300*time.Millisecond
	l := newLab(t, 2, period, lead, time.Second)
	ps := periods(0, n)
	stepAt := l.sched.At(2).ReleaseAt - int64(150*time.Millisecond)
	lostAt, backAt := l.sched.At(4).ReleaseAt-int64(100*time.Millisecond), l.sched.At(6).ReleaseAt-int64(100*time.Millisecond)
	const (
		bound = 100 * time.Microsecond
		step  = 50 * time.Millisecond
	)
	faults := []struct {
		name string
		sim  func() *ptp.Sim
	}{
		{"step +50ms", func() *ptp.Sim {
			return ptp.NewSim(ptp.WithOffset(40*time.Microsecond), ptp.WithUncertainty(bound, 0), ptp.WithStep(stepAt, step))
		}},
		{"drift 2000ppm", func() *ptp.Sim {
			return ptp.NewSim(ptp.WithOffset(-60*time.Microsecond), ptp.WithUncertainty(bound, 0), ptp.WithDrift(2000))
		}},
		{"sync lost 2 periods", func() *ptp.Sim {
			return ptp.NewSim(ptp.WithOffset(20*time.Microsecond), ptp.WithUncertainty(bound, 10),
				ptp.WithStateAt(lostAt, ptp.StateUnsynchronized, "sim: servo unlocked"),
				ptp.WithStateAt(backAt, ptp.StateSynchronized, "sim: servo locked"))
		}},
	}

	// Controls: the step and the drift, unguarded, on edges whose sends
	// go nowhere but a record of when they happened.
	controls := make([]*runningEdge, 2)
	for i := range controls {
		controls[i] = l.startEdge(i, edgeOpts{clock: faults[i].sim(), periods: ps, nowhere: true})
	}

	edges := make([]*runningEdge, len(faults))
	logs := make([]*syncbuf.Buffer, len(faults))
	health := make([]http.Handler, len(faults))
	for i, f := range faults {
		logs[i] = &syncbuf.Buffer{}
		log := slog.New(slog.NewTextHandler(logs[i], nil))
		clock := ptp.NewGuard(f.sim(), ptp.WithGuardLogger(log))
		edges[i] = l.startEdge(i, edgeOpts{clock: clock, periods: ps, logger: log})
		reg := prometheus.NewRegistry()
		metrics.RegisterEdge(reg, edges[i].Edge)
		metrics.RegisterClock(reg, clock)
		health[i] = metrics.Handler(reg, clock)
	}
	var recs []*recorder
	for i := range 8 {
		recs = append(recs, l.startReceiver(l.multicast(l.recvHost(i))))
	}

	// What /readyz says while the faults stand.
	untilTrue(l.sched.At(5).ReleaseAt)
	during := make([]string, len(faults))
	for i := range faults {
		during[i] = get(health[i], "/readyz")
	}
	untilTrue(l.sched.At(n).ReleaseAt + int64(period))

	// Holding over on the oscillator, an edge still releases (for a
	// bounded time): ready, saying why; unsynchronized, it is not.
	const moved = "clock: ok: holdover ±"
	for i, want := range []string{"200 ok", "200 ok", "503 not ok"} {
		if !strings.HasPrefix(during[i], want) {
			t.Errorf("%s: /readyz said %q, want %q…", faults[i].name, during[i], want)
		}
	}
	for i, want := range []string{moved, moved, "clock: FAIL: unsynchronized: sim: servo unlocked"} {
		if !strings.Contains(during[i], want) {
			t.Errorf("%s: /readyz said %q, want …%q…", faults[i].name, during[i], want)
		}
	}
	// The guard measures the step against the oscillator, so the system
	// clock's slewing since its anchor moves the figure by microseconds.
	_, after, _ := strings.Cut(during[0], "clock guard: clock moved ")
	by, _, _ := strings.Cut(after, " ")
	if d, err := time.ParseDuration(by); err != nil || (d-step).Abs() > time.Millisecond {
		t.Errorf("%s: /readyz said %q, want the clock moved %v ± 1ms", faults[0].name, during[0], step)
	}
	if after := get(health[2], "/readyz"); !strings.HasPrefix(after, "200 ok") || !strings.Contains(after, "clock: ok: synchronized") {
		t.Errorf("%s: /readyz after resync said %q", faults[2].name, after)
	}
	for i, want := range []string{"holding over on the oscillator", "holding over on the oscillator", "holding release: clock cannot prove releaseAt has passed"} {
		if !strings.Contains(logs[i].String(), want) {
			t.Errorf("%s: log lacks %q:\n%s", faults[i].name, want, logs[i].String())
		}
	}

	var line []string
	for i, e := range edges {
		early, late, sent := sendSpread(l, e, ps)
		sentEarly := "none early"
		if early > 0 {
			sentEarly = fmt.Sprintf("up to %v early", early)
			t.Errorf("%s (guarded): a RELEASE was sent %v before releaseAt", faults[i].name, early)
		}
		if sent != n {
			t.Errorf("%s (guarded): released %d of %d periods", faults[i].name, sent, n)
		}
		line = append(line, fmt.Sprintf("%s: %d/%d sent, %s, latest +%v", faults[i].name, sent, n, sentEarly, late.Round(time.Microsecond)))
	}
	for i, e := range controls {
		early, _, _ := sendSpread(l, e, ps)
		if early < 10*bound {
			t.Errorf("control %s without the guard was early by only %v: the fault is not real", faults[i].name, early)
		}
		line = append(line, fmt.Sprintf("unguarded %s: up to %v early", faults[i].name, early.Round(time.Millisecond)))
	}
	wait.Until(stragglers, func() bool { return delivered(recs, ps) })
	v := l.judge(recs, ps)
	if !v.ok() {
		t.Errorf("receivers: %+v", v)
	}
	result(t, "%d receivers × %d periods, %d missing, %d early, %d opened after presentAt; %s", len(recs), n, v.missing, v.early, v.late, strings.Join(line, "; "))
}

// sendSpread returns how far before releaseAt the earliest RELEASE was
// sent (0 if none was early), the latest first send after releaseAt, and
// how many of ps were sent at all.
func sendSpread(l *lab, e *runningEdge, ps []uint64) (early, late time.Duration, sent int) {
	for _, n := range ps {
		at, ok := e.FirstSend(n)
		if !ok {
			continue
		}
		sent++
		d := time.Duration(at - l.sched.At(n).ReleaseAt)
		early, late = max(early, -d), max(late, d)
	}
	return early, late, sent
}

// get serves one GET from h and returns "status body".
func get(h http.Handler, path string) string {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return fmt.Sprintf("%d %s", w.Code, strings.TrimSpace(w.Body.String()))
}
