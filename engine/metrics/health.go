package metrics

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/ptp"
)

// A Check is one named health condition, evaluated at each request.
type Check struct {
	Name string
	// Live marks a condition whose failure means the process should be
	// restarted: it counts for /healthz (liveness) as well as /readyz
	// (readiness). The others only take the process out of rotation.
	Live bool
	// Eval says whether the condition holds, and why.
	Eval func() (ok bool, reason string)
}

// ClockCheck is ready while c is synchronized, or in holdover (a guard
// releasing on the oscillator for a bounded time): an unsynchronized clock
// holds every release.
func ClockCheck(c ptp.Clock) Check {
	return Check{Name: "clock", Eval: func() (bool, string) {
		r, err := c.Now()
		switch {
		case err != nil:
			return false, err.Error()
		case r.State == ptp.StateSynchronized:
			return true, fmt.Sprintf("synchronized ±%v", r.Uncertainty().Round(time.Microsecond))
		case r.State == ptp.StateHoldover:
			return true, fmt.Sprintf("holdover ±%v: %s", r.Uncertainty().Round(time.Microsecond), r.Reason)
		}
		return false, fmt.Sprintf("%v: %s", r.State, r.Reason)
	}}
}

// SendersCheck is ready while every sender took its last send.
func SendersCheck(e *edge.Edge) Check {
	return Check{Name: "senders", Eval: func() (bool, string) {
		errs := e.SenderErrors()
		if len(errs) == 0 {
			return true, "every sender took its last send"
		}
		var out []string
		for _, i := range slices.Sorted(maps.Keys(errs)) {
			out = append(out, fmt.Sprintf("sender %d: %v", i, errs[i]))
		}
		return false, "last send failed: " + strings.Join(out, "; ")
	}}
}

// BundlesCheck is ready while the edge holds at least n unreleased
// periods of every stream. Between a release and the next bundle's
// arrival a stream may hold fewer for a moment, so a stream is reported
// short only once it has been short for longer than grace — except before
// it ever held n, as at a start with the origin down.
func BundlesCheck(e *edge.Edge, streams []uint32, n int, grace time.Duration) Check {
	var mu sync.Mutex
	shortSince := make(map[uint32]time.Time)
	covered := make(map[uint32]bool)
	return Check{Name: "bundles", Eval: func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		ok := true
		var out []string
		for _, s := range streams {
			ahead := e.Ahead(s)
			if ahead >= n {
				covered[s] = true
				delete(shortSince, s)
				out = append(out, fmt.Sprintf("stream %d: %d periods ahead", s, ahead))
				continue
			}
			since, seen := shortSince[s]
			if !seen {
				since = now
				shortSince[s] = now
			}
			short := now.Sub(since)
			if !covered[s] || short > grace {
				ok = false
				out = append(out, fmt.Sprintf("stream %d: %d periods ahead, want %d, for %v", s, ahead, n, short.Round(time.Millisecond)))
				continue
			}
			out = append(out, fmt.Sprintf("stream %d: %d periods ahead, want %d, for %v (within %v)", s, ahead, n, short.Round(time.Millisecond), grace))
		}
		return ok, strings.Join(out, "; ")
	}}
}

// UnicastCheck is ready while the unicast server answers subscribers.
func UnicastCheck(s *unicast.Server) Check {
	return Check{Name: "unicast", Eval: func() (bool, string) {
		if s.Serving() {
			return true, "serving on " + s.Addr().String()
		}
		return false, "not serving on " + s.Addr().String()
	}}
}

// RegisterPoller exports the edge's origin client: fetch errors, how long
// since the last good fetch, periods missed.
func RegisterPoller(reg prometheus.Registerer, p *poller.Poller) {
	counter := countersOf(reg, "edge", p.Stats)
	counter("fetch_errors_total", "Fetches from the origin that failed (unreachable, TLS, HTTP).", func(s poller.Stats) uint64 { return s.FetchErrors })
	counter("documents_refused_total", "Fetches that failed or CPIX documents refused whole.", func(s poller.Stats) uint64 { return s.Refused })
	counter("bundles_missed_total", "Bundles the edge was too busy to take before their releaseAt.", func(s poller.Stats) uint64 { return s.Missed })
	counter("origin_failovers_total", "Moves from a failing origin replica (no connection, timeout, 5xx) to the next.", func(s poller.Stats) uint64 { return s.Failovers })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "edge", Name: "seconds_since_fetch",
		Help: "Seconds since the last successful fetch from the origin (-1: none yet)."},
		func() float64 {
			if at := p.Stats().LastFetch; !at.IsZero() {
				return time.Since(at).Seconds()
			}
			return -1
		}))
}

// OriginCheck names the origin replica in use and why the client last
// failed over; it fails while every replica failed the last request.
func OriginCheck(o *fetch.Origins) Check { return Check{Name: "origin", Eval: o.Status} }

// RegisterAhead exports, per stream, how many unreleased periods the edge
// holds.
func RegisterAhead(reg prometheus.Registerer, e *edge.Edge, streams []uint32) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "edge", Name: "bundles_ahead",
		Help: "Unreleased periods the edge holds, by stream: how far ahead its bundles reach."}, []string{"stream"})
	reg.MustRegister(aheadCollector{g: g, e: e, streams: streams})
}

type aheadCollector struct {
	g       *prometheus.GaugeVec
	e       *edge.Edge
	streams []uint32
}

func (c aheadCollector) Describe(ch chan<- *prometheus.Desc) { c.g.Describe(ch) }

func (c aheadCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.streams {
		c.g.WithLabelValues(fmt.Sprint(s)).Set(float64(c.e.Ahead(s)))
	}
	c.g.Collect(ch)
}

// Ready evaluates checks as /readyz does: nil when all hold, else an
// error naming each failing condition with its reason (for sd_notify's
// STATUS, or a log line).
func Ready(checks ...Check) error {
	var failed []string
	for _, c := range checks {
		if ok, why := c.Eval(); !ok {
			failed = append(failed, c.Name+": "+why)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return errors.New(strings.Join(failed, "; "))
}

// serveHealth answers with every check of checks (or the live ones):
// 200 and "ok" when all hold, 503 and "not ok" otherwise, then one line
// per condition: "name: ok|FAIL: reason".
func serveHealth(w http.ResponseWriter, checks []Check, liveOnly bool) {
	ok := true
	var b strings.Builder
	for _, c := range checks {
		if liveOnly && !c.Live {
			continue
		}
		good, why := c.Eval()
		verdict := "ok"
		if !good {
			ok, verdict = false, "FAIL"
		}
		fmt.Fprintf(&b, "%s: %s: %s\n", c.Name, verdict, why)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "not ok\n"+b.String())
		return
	}
	fmt.Fprint(w, "ok\n"+b.String())
}
