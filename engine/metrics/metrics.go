// Package metrics exposes an edge's counters to Prometheus and its health
// to load balancers and orchestrators. Collectors read the roles' Stats at
// scrape time, so nothing on the release path touches a metric except the
// lateness histogram, observed after each release's copies are out.
package metrics

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

const namespace = "embargo"

// Lateness is a histogram of release lateness past releaseAt (by the
// clock's earliest bound), to pass to edge.Config.OnRelease through
// Observe.
type Lateness struct{ h prometheus.Histogram }

// NewLateness registers the lateness histogram.
func NewLateness(reg prometheus.Registerer) *Lateness {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "edge", Name: "release_lateness_seconds",
		Help:    "First RELEASE send past releaseAt, by the clock's earliest possible time (never negative).",
		Buckets: []float64{1e-6, 1e-5, 1e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.2, 1, 10},
	})
	reg.MustRegister(h)
	return &Lateness{h: h}
}

// Observe records one release.
func (l *Lateness) Observe(r edge.Report) { l.h.Observe(r.Lateness.Seconds()) }

// RegisterEdge exports the edge's counters.
func RegisterEdge(reg prometheus.Registerer, e *edge.Edge) {
	counter := func(name, help string, get func(edge.Stats) uint64) {
		counterFunc(reg, "edge", name, help, e.Stats, get)
	}
	counter("bundles_accepted_total", "Bundles accepted (verified) for release.", func(s edge.Stats) uint64 { return s.BundlesAccepted })
	counter("bundles_refused_total", "Bundles refused: bad signature or commitment, duplicate, conflict, stale, or over the limit.", func(s edge.Stats) uint64 { return s.BundlesRefused })
	counter("released_periods_total", "Periods released.", func(s edge.Stats) uint64 { return s.Released })
	counter("release_datagrams_total", "RELEASE datagrams handed to senders (all copies, all senders).", func(s edge.Stats) uint64 { return s.ReleaseCopies })
	counter("announce_datagrams_total", "ANNOUNCE datagrams handed to senders.", func(s edge.Stats) uint64 { return s.ShardsSent })
	counter("carousel_rounds_total", "Carousel rounds sent.", func(s edge.Stats) uint64 { return s.Rounds })
	counter("clock_holds_total", "Clock reads that held a due release because the clock could not vouch for the instant.", func(s edge.Stats) uint64 { return s.Holds })
	counter("send_errors_total", "Sends that failed.", func(s edge.Stats) uint64 { return s.SendErrors })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "edge", Name: "pending_bundles", Help: "Bundles held, not yet released."},
		func() float64 { return float64(e.Stats().Pending) }))
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
	counter := func(name, help string, get func(unicast.ServerStats) uint64) {
		counterFunc(reg, "unicast", name, help, s.Stats, get)
	}
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

// Handler serves /metrics from reg and /healthz: 200 while the clock is
// synchronized, 503 with the clock's reason otherwise (an edge that cannot
// release should be taken out of rotation).
func Handler(reg *prometheus.Registry, c ptp.Clock) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		rd, err := c.Now()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err != nil || rd.State != ptp.StateSynchronized {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "clock %v: %s %v\n", rd.State, rd.Reason, err)
			return
		}
		fmt.Fprintf(w, "ok: clock synchronized ±%v\n", rd.Uncertainty().Round(time.Microsecond))
	})
	return mux
}
