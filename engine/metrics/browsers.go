package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/webedge"
)

// RegisterBrowsers exports the counters of an edge's browser endpoint
// (webedge.Server.Stats): sessions held, and why browsers were refused or
// closed, so a slow or hostile audience shows before viewers complain.
func RegisterBrowsers(reg prometheus.Registerer, stats func() webedge.Stats) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "browsers", Name: "sessions", Help: "Browser sessions (WebSocket and WebTransport) held now."},
		func() float64 { return float64(stats().Conns) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "browsers", Name: "connections", Help: "TCP connections the WebSocket endpoint holds now (sessions and requests on their way to one)."},
		func() float64 { return float64(stats().Connections) }))
	counter := countersOf(reg, "browsers", stats)
	counter("accepted_total", "Browser sessions opened.", func(st webedge.Stats) uint64 { return st.Accepted })
	counter("refused_total", "Browser requests turned away: not admitted, over the session limit, or a failed upgrade.", func(st webedge.Stats) uint64 { return st.Refused })
	counter("refused_address_total", "Browser requests turned away because their IP address or IPv6 prefix held its most sessions (among refused_total).", func(st webedge.Stats) uint64 { return st.RefusedAddress })
	counter("refused_viewer_total", "Browser requests turned away because their subscription token's viewer held its most sessions (among refused_total).", func(st webedge.Stats) uint64 { return st.RefusedViewer })
	counter("refused_connections_total", "TCP connections closed as accepted because their address or IPv6 prefix held its most.", func(st webedge.Stats) uint64 { return st.RefusedConnections })
	counter("quic_retries_total", "WebTransport Initial packets answered with a QUIC Retry: more handshakes a second from unproven addresses than the edge takes without.", func(st webedge.Stats) uint64 { return st.Retries })
	counter("quic_refused_initials_total", "WebTransport Initial packets whose connection was refused before its handshake: the edge full, or the address or prefix at its limit.", func(st webedge.Stats) uint64 { return st.RefusedInitials })
	counter("quic_handshakes_total", "WebTransport connections let on to their TLS handshake.", func(st webedge.Stats) uint64 { return st.Handshakes })
	counter("refused_token_total", "Browser requests turned away for a missing, expired or untrusted subscription token (among refused_total).", func(st webedge.Stats) uint64 { return st.BadToken })
	counter("sent_datagrams_total", "Datagrams written to browsers.", func(st webedge.Stats) uint64 { return st.Sent })
	counter("catchup_datagrams_total", "Datagrams queued as catch-up for a joining browser.", func(st webedge.Stats) uint64 { return st.CatchUp })
	counter("closed_slow_total", "Browsers closed for a full queue or a stalled write.", func(st webedge.Stats) uint64 { return st.Slow })
	counter("closed_bad_input_total", "Browsers closed for sending anything.", func(st webedge.Stats) uint64 { return st.BadInput })
	counter("write_errors_total", "Writes to browsers that failed (the browser went away).", func(st webedge.Stats) uint64 { return st.WriteErrors })
	counter("time_echoes_total", "Browsers' time requests answered (their clocks measured against the edge's).", func(st webedge.Stats) uint64 { return st.TimeEchoes })
	counter("time_requests_unanswered_total", "Browsers' time requests left unanswered because the edge's clock could not be read.", func(st webedge.Stats) uint64 { return st.TimeUnanswered })
	counter("release_copies_skipped_total", "The edge's further copies of a live RELEASE not sent to a browser already sent it (its session is reliable).", func(st webedge.Stats) uint64 { return st.CopiesSkipped })
	counter("announce_repeats_skipped_total", "ANNOUNCE datagrams of the carousel's later rounds not sent to a browser already sent them (its session is reliable).", func(st webedge.Stats) uint64 { return st.AnnounceRepeats })
	counter("dropped_datagrams_total", "Datagrams not queued because their browser's queue was full.", func(st webedge.Stats) uint64 { return st.Dropped })
}

// RegisterBrowserCertificate exports the browsers' TLS certificate: when
// it expires (alert well before: `embargo_browsers_certificate_not_after_seconds
// - time() < 7 * 86400`), and renewals taken and refused.
func RegisterBrowserCertificate(reg prometheus.Registerer, c *webedge.Certificate) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "browsers", Name: "certificate_not_after_seconds", Help: "When the certificate browsers are served expires (Unix time)."},
		func() float64 { return float64(c.Status().NotAfter.Unix()) }))
	counter := countersOf(reg, "browsers", c.Status)
	counter("certificate_reloads_total", "Renewed certificate files taken without a restart.", func(st webedge.CertificateStatus) uint64 { return st.Reloads })
	counter("certificate_reload_errors_total", "Changed certificate files that could not be used (the previous certificate stayed).", func(st webedge.CertificateStatus) uint64 { return st.Failures })
}

// BrowserCertificateCheck is ready while the browsers' certificate is
// valid; the reason says until when, and a renewal refused.
func BrowserCertificateCheck(c *webedge.Certificate) Check {
	return Check{Name: "browsers-certificate", Eval: func() (bool, string) { return c.Status().Describe(time.Now()) }}
}
