package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsAndHealth(t *testing.T) {
	o, _, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	clock := ptp.NewSim(ptp.WithUncertainty(time.Millisecond, 0))
	reg := prometheus.NewRegistry()
	lat := metrics.NewLateness(reg)
	e, err := edge.New(edge.Config{Clock: clock, Trusted: seal.NewKeyRing(o.PublicKey()), Senders: []edge.Sender{&edgetest.Sender{}}, OnRelease: lat.Observe})
	if err != nil {
		t.Fatal(err)
	}
	metrics.RegisterEdge(reg, e)
	metrics.RegisterClock(reg, clock)
	us, err := unicast.NewServer(unicast.ServerConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Senders: 1, Clock: clock,
		Sessions: unicast.SessionConfig{Streams: []uint32{1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer us.Close()
	metrics.RegisterUnicast(reg, us)
	keys, _ := o.NewContentKeys(1)
	b, _ := o.Keys(1, 1, origin.Instants{ReleaseAt: clock.True() + int64(time.Hour), PresentAt: clock.True() + int64(time.Hour)}, keys)
	if err := e.Add(b); err != nil {
		t.Fatal(err)
	}
	e.Add(b) // a duplicate: refused

	srv := httptest.NewServer(metrics.Handler(reg, clock))
	defer srv.Close()
	code, body := get(t, srv, "/metrics")
	for _, want := range []string{
		"embargo_edge_bundles_accepted_total 1",
		"embargo_edge_bundles_refused_total 1",
		"embargo_edge_pending_bundles 1",
		"embargo_clock_synchronized 1",
		"embargo_clock_uncertainty_seconds 0.001",
		"embargo_edge_release_lateness_seconds_count 0",
		"embargo_unicast_subscribers 0",
		"embargo_unicast_sent_datagrams_total 0",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q (status %d)", want, code)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, srv, path); code != 200 || !strings.HasPrefix(body, "ok\n") {
			t.Errorf("%s synchronized: %d %q", path, code, body)
		}
	}
	clock.SetState(ptp.StateUnsynchronized, "test: grandmaster lost")
	if code, body := get(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "clock: FAIL: unsynchronized: test: grandmaster lost") {
		t.Errorf("/readyz unsynchronized: %d %q", code, body)
	}
	// Alive all the same: a restart would not bring the grandmaster back.
	if code, body := get(t, srv, "/healthz"); code != 200 || strings.Contains(body, "clock") {
		t.Errorf("/healthz unsynchronized: %d %q", code, body)
	}
	if _, body := get(t, srv, "/metrics"); !strings.Contains(body, "embargo_clock_synchronized 0") {
		t.Error("clock_synchronized did not drop to 0")
	}
}

// TestReleaseMetrics: after releases in virtual time, the counters say
// exactly what was sent and the lateness histogram holds each release's
// lateness (by the clock's earliest bound) and the bound it rested on.
func TestReleaseMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _, err := origin.Generate()
		if err != nil {
			t.Fatal(err)
		}
		clock := ptp.NewSim(ptp.WithUncertainty(250*time.Microsecond, 0))
		reg := prometheus.NewRegistry()
		lat := metrics.NewLateness(reg)
		e, err := edge.New(edge.Config{Clock: clock, Trusted: seal.NewKeyRing(o.PublicKey()), Senders: []edge.Sender{&edgetest.Sender{}},
			Repeat: 3, Waiter: ptp.Sleeper{}, OnRelease: lat.Observe})
		if err != nil {
			t.Fatal(err)
		}
		metrics.RegisterEdge(reg, e)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		defer func() { cancel(); <-done }()
		now := clock.True()
		for p, at := range []int64{now + int64(time.Second), now - int64(2*time.Second)} { // on time; 2 s late
			keys, _ := o.NewContentKeys(1)
			b, err := o.Keys(1, uint64(p), origin.Instants{ReleaseAt: at, PresentAt: at}, keys)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Add(b); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := gather(t, reg)
		for name, want := range map[string]float64{
			// The bundle 2 s late is kept for catch-up, not released.
			"embargo_edge_released_periods_total":               1,
			"embargo_edge_past_bundles_total":                   1,
			"embargo_edge_release_datagrams_total":              3,
			"embargo_edge_send_errors_total":                    0,
			"embargo_edge_release_lateness_seconds_count":       1,
			"embargo_edge_release_lateness_seconds_sum":         0,
			"embargo_edge_release_bound_seconds_count":          1,
			"embargo_edge_release_bound_seconds_sum":            250e-6,
			"embargo_edge_release_clock_data_age_seconds_count": 1,
		} {
			if got[name] != want {
				t.Errorf("%s = %v, want %v", name, got[name], want)
			}
		}
	})
}

// gather is reg's series by name: a gauge's or counter's value, a
// histogram's NAME_count and NAME_sum; of a family with several series,
// the last.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				got[mf.GetName()] = m.Gauge.GetValue()
			case m.Counter != nil:
				got[mf.GetName()] = m.Counter.GetValue()
			case m.Histogram != nil:
				got[mf.GetName()+"_count"] = float64(m.Histogram.GetSampleCount())
				got[mf.GetName()+"_sum"] = m.Histogram.GetSampleSum()
			}
		}
	}
	return got
}
