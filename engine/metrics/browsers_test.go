package metrics_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/webedge"
)

// TestRegisterBrowsers: each series reads its counter at scrape time.
func TestRegisterBrowsers(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := webedge.Stats{Conns: 3, Accepted: 5, Refused: 1, BadToken: 10, Sent: 70, CatchUp: 9, Slow: 2, BadInput: 4, WriteErrors: 6, Dropped: 8, TimeEchoes: 11, TimeUnanswered: 12, CopiesSkipped: 13, AnnounceRepeats: 14, RefusedAddress: 15, Retries: 16, RefusedInitials: 17, Handshakes: 18, RefusedConnections: 19, Connections: 20, RefusedViewer: 21}
	metrics.RegisterBrowsers(reg, func() webedge.Stats { return st })
	st.Sent = 71 // read at scrape time, not at registration
	got := gather(t, reg)
	for name, v := range map[string]float64{
		"embargo_browsers_sessions": 3, "embargo_browsers_accepted_total": 5, "embargo_browsers_refused_total": 1, "embargo_browsers_refused_token_total": 10,
		"embargo_browsers_sent_datagrams_total": 71, "embargo_browsers_catchup_datagrams_total": 9,
		"embargo_browsers_closed_slow_total": 2, "embargo_browsers_closed_bad_input_total": 4,
		"embargo_browsers_write_errors_total": 6, "embargo_browsers_dropped_datagrams_total": 8,
		"embargo_browsers_time_echoes_total": 11, "embargo_browsers_time_requests_unanswered_total": 12,
		"embargo_browsers_release_copies_skipped_total": 13, "embargo_browsers_announce_repeats_skipped_total": 14, "embargo_browsers_refused_address_total": 15,
		"embargo_browsers_quic_retries_total": 16, "embargo_browsers_quic_refused_initials_total": 17, "embargo_browsers_quic_handshakes_total": 18,
		"embargo_browsers_refused_connections_total": 19, "embargo_browsers_connections": 20, "embargo_browsers_refused_viewer_total": 21,
	} {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if len(got) != 21 {
		t.Errorf("%d series, want 21: %v", len(got), got)
	}
}

// TestBrowserCertificate: the expiry gauge is the certificate's not-after,
// and readiness fails, with the reason, once it has passed.
func TestBrowserCertificate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conf, _, err := webedge.SelfSigned([]string{"edge.example"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := webedge.FixedCertificate(conf.Certificates[0])
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		metrics.RegisterBrowserCertificate(reg, c)
		got := gather(t, reg)
		if want := float64(conf.Certificates[0].Leaf.NotAfter.Unix()); got["embargo_browsers_certificate_not_after_seconds"] != want || len(got) != 3 {
			t.Errorf("series %v, want not-after %v and 2 counters", got, want)
		}
		check := metrics.BrowserCertificateCheck(c)
		if ok, reason := check.Eval(); !ok || !strings.Contains(reason, "valid until") {
			t.Errorf("new: %v %q", ok, reason)
		}
		time.Sleep(time.Hour)
		if ok, reason := check.Eval(); ok || !strings.Contains(reason, "expired") {
			t.Errorf("an hour later: %v %q, want not ready, expired", ok, reason)
		}
	})
}
