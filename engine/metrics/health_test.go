package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// ask serves one GET from h in memory and returns the status and body.
func ask(h http.Handler, path string) (int, string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, w.Body.String()
}

// TestReadiness: /readyz names every condition with its reason and is
// 503 as soon as one fails — no bundles ahead (at a start with the origin
// down, or for longer than the grace after a release), a sender whose
// last send failed, an unsynchronized clock — while /healthz stays 200.
// Before, /healthz looked at the clock alone: an edge releasing nothing
// for want of bundles, or sending into a dead link, said "200 ok".
func TestReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _, err := origin.Generate()
		if err != nil {
			t.Fatal(err)
		}
		clock := ptp.NewSim()
		sender := &edgetest.Sender{True: clock.True}
		e, err := edge.New(edge.Config{Clock: clock, Trusted: seal.NewKeyRing(o.PublicKey()), Senders: []edge.Sender{sender},
			Repeat: 1, Lead: 500 * time.Millisecond, Waiter: ptp.Sleeper{}})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		metrics.RegisterAhead(reg, e, []uint32{1})
		h := metrics.Handler(reg, clock, metrics.SendersCheck(e), metrics.BundlesCheck(e, []uint32{1}, 2, time.Second))
		ready := func(wantCode int, want ...string) {
			t.Helper()
			code, body := ask(h, "/readyz")
			if code != wantCode {
				t.Errorf("/readyz %d, want %d:\n%s", code, wantCode, body)
			}
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("/readyz lacks %q:\n%s", w, body)
				}
			}
			if code, body := ask(h, "/healthz"); code != 200 {
				t.Errorf("/healthz %d:\n%s", code, body)
			}
		}
		ready(503, "bundles: FAIL: stream 1: 0 periods ahead, want 2", "clock: ok: synchronized", "senders: ok")

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		defer func() { cancel(); <-done }()
		add := func(p uint64, at int64) {
			keys, _ := o.NewContentKeys(1)
			b, err := o.Keys(1, p, origin.Instants{ReleaseAt: at, PresentAt: at}, keys)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Add(b); err != nil {
				t.Fatal(err)
			}
		}
		t0 := clock.True()
		add(1, t0+int64(time.Second))
		add(2, t0+int64(2*time.Second))
		ready(200, "bundles: ok: stream 1: 2 periods ahead")
		if _, body := ask(h, "/metrics"); !strings.Contains(body, `embargo_edge_bundles_ahead{stream="1"} 2`) {
			t.Errorf("/metrics lacks bundles_ahead 2:\n%s", body)
		}

		// Period 1 released: one ahead, within the grace for a moment.
		time.Sleep(1500 * time.Millisecond)
		ready(200, "stream 1: 1 periods ahead, want 2, for 0s (within 1s)")
		time.Sleep(1100 * time.Millisecond) // period 2 released too
		ready(503, "bundles: FAIL: stream 1: 0 periods ahead, want 2, for 1.1s")
		add(3, t0+int64(4*time.Second))
		add(4, t0+int64(5*time.Second))
		ready(200)

		// A dead link: not ready until a send gets through again.
		sender.Fail(errors.New("sendmmsg: network is unreachable"))
		time.Sleep(1500 * time.Millisecond) // period 3's announce and release fail
		ready(503, "senders: FAIL: last send failed: sender 0: sendmmsg: network is unreachable")
		sender.Fail(nil)
		add(5, t0+int64(6*time.Second))
		time.Sleep(time.Second)
		ready(200, "senders: ok")

		clock.SetState(ptp.StateHoldover, "test: holding over")
		ready(200, "clock: ok: holdover")
		clock.SetState(ptp.StateUnsynchronized, "test: grandmaster lost")
		ready(503, "clock: FAIL: unsynchronized: test: grandmaster lost")
	})
}
