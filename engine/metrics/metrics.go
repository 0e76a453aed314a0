// Package metrics exposes an edge's counters to Prometheus and its health
// to load balancers and orchestrators. Collectors read the roles' Stats at
// scrape time, so nothing on the release path touches a metric except the
// lateness histogram, observed after each release's copies are out.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

const namespace = "embargo"

// Lateness is the histograms of each release: its lateness past
// releaseAt (by the clock's earliest bound), the clock's bound it rested
// on and the age of the data behind that bound, at the commit-wait. Pass
// Observe to edge.Config.OnRelease.
type Lateness struct{ late, bound, age prometheus.Histogram }

// NewLateness registers the release histograms.
func NewLateness(reg prometheus.Registerer) *Lateness {
	hist := func(name, help string) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "edge", Name: name, Help: help,
			Buckets: []float64{1e-6, 1e-5, 1e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.2, 1, 10}})
		reg.MustRegister(h)
		return h
	}
	return &Lateness{
		late:  hist("release_lateness_seconds", "First RELEASE send past releaseAt, by the clock's earliest possible time (never negative)."),
		bound: hist("release_bound_seconds", "Half-width of the clock's bound at each release's commit-wait: the uncertainty the release rested on."),
		age:   hist("release_clock_data_age_seconds", "Age of the data behind the clock's bound at each release (a time daemon's last answer; 0 for clocks that do not say)."),
	}
}

// Observe records one release.
func (l *Lateness) Observe(r edge.Report) {
	l.late.Observe(r.Lateness.Seconds())
	l.bound.Observe(r.Clock.Uncertainty().Seconds())
	l.age.Observe(r.Clock.DataAge.Seconds())
}

// RegisterEdge exports the edge's counters.
func RegisterEdge(reg prometheus.Registerer, e *edge.Edge) {
	counter := countersOf(reg, "edge", e.Stats)
	counter("bundles_accepted_total", "Bundles accepted (verified) for release.", func(s edge.Stats) uint64 { return s.BundlesAccepted })
	counter("bundles_refused_total", "Bundles refused: bad signature or commitment, duplicate, conflict, stale, or over the limit.", func(s edge.Stats) uint64 { return s.BundlesRefused })
	counter("released_periods_total", "Periods released: at least one sender took a RELEASE copy.", func(s edge.Stats) uint64 { return s.Released })
	counter("past_bundles_total", "Bundles whose releaseAt had passed before the edge held them: kept for catch-up, never released live.", func(s edge.Stats) uint64 { return s.Past })
	counter("release_failed_periods_total", "Periods due that no sender took a single RELEASE copy of (only catch-up serves them).", func(s edge.Stats) uint64 { return s.ReleaseFailed })
	counter("release_datagrams_total", "RELEASE datagrams senders took (all copies, all senders).", func(s edge.Stats) uint64 { return s.ReleaseCopies })
	counter("release_unsent_datagrams_total", "RELEASE datagrams handed to a sender that it did not take.", func(s edge.Stats) uint64 { return s.ReleaseUnsent })
	counter("announce_datagrams_total", "ANNOUNCE datagrams senders took.", func(s edge.Stats) uint64 { return s.ShardsSent })
	counter("announce_unsent_datagrams_total", "ANNOUNCE datagrams handed to a sender that it did not take.", func(s edge.Stats) uint64 { return s.AnnounceUnsent })
	counter("carousel_rounds_total", "Carousel rounds sent.", func(s edge.Stats) uint64 { return s.Rounds })
	counter("clock_holds_total", "Clock reads that held a due release because the clock could not vouch for the instant.", func(s edge.Stats) uint64 { return s.Holds })
	counter("send_errors_total", "Send calls that failed.", func(s edge.Stats) uint64 { return s.SendErrors })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "edge", Name: "failing_senders", Help: "Senders whose last send failed."},
		func() float64 { return float64(e.Stats().FailingSenders) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "edge", Name: "pending_bundles", Help: "Bundles held, not yet released."},
		func() float64 { return float64(e.Stats().Pending) }))
}

// countersOf returns a function that registers counters of subsystem,
// each reading one field of stats() at scrape time.
func countersOf[S any](reg prometheus.Registerer, subsystem string, stats func() S) func(name, help string, get func(S) uint64) {
	return func(name, help string, get func(S) uint64) { counterFunc(reg, subsystem, name, help, stats, get) }
}

// counterFunc registers a counter that reads get(stats()) at scrape time.
func counterFunc[S any](reg prometheus.Registerer, subsystem, name, help string, stats func() S, get func(S) uint64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help},
		func() float64 { return float64(get(stats())) }))
}

// RegisterUnicast exports the unicast server's counters.
func RegisterUnicast(reg prometheus.Registerer, s *unicast.Server) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "unicast", Name: "subscribers", Help: "Live unicast subscriptions."},
		func() float64 { return float64(s.Stats().Sessions.Subscribers) }))
	counter := countersOf(reg, "unicast", s.Stats)
	counter("sent_datagrams_total", "Datagrams fanned out to subscribers.", func(st unicast.ServerStats) uint64 { return st.Sent })
	counter("send_errors_total", "Datagrams the kernel refused.", func(st unicast.ServerStats) uint64 { return st.SendErrors })
	counter("catchup_datagrams_total", "Datagrams sent as catch-up.", func(st unicast.ServerStats) uint64 { return st.CatchUp })
	counter("expired_total", "Subscriptions dropped for silence.", func(st unicast.ServerStats) uint64 { return st.Sessions.Expired })
	counter("session_bytes_in_total", "Session-protocol bytes received.", func(st unicast.ServerStats) uint64 { return st.Sessions.BytesIn })
	counter("session_bytes_out_total", "Session-protocol bytes answered (never more than received from unvalidated addresses).", func(st unicast.ServerStats) uint64 { return st.Sessions.BytesOut })
	counter("forged_total", "KEEPALIVE, LEAVE and RESPONSE datagrams naming a live session whose MAC failed: dropped.", func(st unicast.ServerStats) uint64 { return st.Sessions.Forged })
	counter("challenges_total", "Path challenges sent to a session's new address.", func(st unicast.ServerStats) uint64 { return st.Sessions.Challenges })
	counter("moved_total", "Subscriptions moved to a new address that proved itself.", func(st unicast.ServerStats) uint64 { return st.Sessions.Moved })
	for r := wire.ReasonBadCookie; r <= wire.ReasonBusy; r++ {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: "unicast", Name: "refused_total",
			Help: "Session requests refused, by reason (PROTOCOL.md §4.5).", ConstLabels: prometheus.Labels{"reason": r.String()}},
			func() float64 { return float64(s.Stats().Sessions.Refused[r]) }))
	}
}

// RegisterClock exports the clock's state and uncertainty.
func RegisterClock(reg prometheus.Registerer, c ptp.Clock) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "clock", Name: "synchronized", Help: "1 when the clock vouches for its bound (releases can go out), else 0."},
		func() float64 {
			if r, err := c.Now(); err == nil && r.State == ptp.StateSynchronized {
				return 1
			}
			return 0
		}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "clock", Name: "uncertainty_seconds", Help: "Half-width of the clock's bound: how long a release waits past releaseAt at least."},
		func() float64 {
			r, err := c.Now()
			if err != nil {
				return -1
			}
			return r.Uncertainty().Seconds()
		}))
}

// Handler serves /metrics from reg, /healthz (liveness: is the process
// working, or should it be restarted) and /readyz (readiness: can it
// release the next periods on time, or should it be taken out of
// rotation). Both answer 200 "ok" or 503 "not ok", then one line per
// condition with its verdict and reason. Readiness checks the clock
// (ClockCheck; none if c is nil) and every check given; liveness the
// checks marked Live.
func Handler(reg *prometheus.Registry, c ptp.Clock, checks ...Check) http.Handler {
	all := []Check{{Name: "http", Live: true, Eval: func() (bool, string) { return true, "serving" }}}
	if c != nil {
		all = append(all, ClockCheck(c))
	}
	all = append(all, checks...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { serveHealth(w, all, true) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { serveHealth(w, all, false) })
	return mux
}
