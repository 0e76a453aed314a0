package poller_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/keystoretest"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/ptp"
)

// byHost routes each request to its host's transport.
type byHost map[string]http.RoundTripper

func (b byHost) RoundTrip(r *http.Request) (*http.Response, error) { return b[r.URL.Host].RoundTrip(r) }

// TestFailover: an edge polling two origin replicas that share one store
// loses the one it uses mid-event — its issuer and its answers both stop
// — and is handed every period all the same, each once, on time: the
// poll that finds the replica gone asks the other at once, which issued
// the periods itself. The move is counted.
func TestFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := new(keystoretest.Mem)
		clock := ptp.NewSim()
		sched := origin.Schedule{Epoch: clock.True(), Period: 200 * time.Millisecond, Lead: 600 * time.Millisecond, PresentDelay: 200 * time.Millisecond}
		_, master, _ := origin.Generate()
		edgeCert, _ := certs()
		var aDown atomic.Bool
		rts := byHost{}
		stops := map[string]context.CancelFunc{}
		for _, host := range []string{"a.test", "b.test"} {
			issuer, err := keyserver.NewIssuer(store, clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			issuer.AddEvent(&keystore.Event{Stream: 1, Master: master, Keys: 1, Schedule: sched}) // the second gets ErrExists, and the first's event
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); issuer.Run(ctx, 50*time.Millisecond) }()
			stops[host] = func() { cancel(); <-done }
			t.Cleanup(stops[host])
			rts[host] = &memhttp.Transport{Handler: keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer}),
				TLS: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{edgeCert.Cert}}}}
		}
		rts["a.test"] = down{next: rts["a.test"], origin: aDown.Load}
		origins := fetch.NewOrigins("https://a.test", "https://b.test")
		p := &poller.Poller{Origins: origins, Streams: []uint32{1}, Client: &http.Client{Transport: rts}, Key: edgeCert.Key,
			Interval: 100 * time.Millisecond, Jitter: func() float64 { return 0 }}
		t0 := time.Now()
		go func() {
			time.Sleep(ms(750))
			aDown.Store(true)
			stops["a.test"]()
		}()
		ctx, cancel := context.WithTimeout(t.Context(), ms(2050))
		defer cancel()
		seen := map[uint64]time.Duration{}
		p.Run(ctx, func(b *bundle.Bundle) error {
			if _, dup := seen[b.Period]; dup {
				t.Errorf("period %d handed twice", b.Period)
			}
			seen[b.Period] = time.Since(t0)
			return nil
		})
		// By 2050 ms periods up to 13 (released at 2.6 s, announced at
		// 2.0 s) are out; period 0 was released at the start.
		for n := uint64(1); n <= 13; n++ {
			at, ok := seen[n]
			if !ok {
				t.Errorf("period %d never handed", n)
				continue
			}
			// Announced at n·200−600 ms; handed at the next poll (every 100 ms).
			if announced := max(0, ms(int(n)*200-600)); at > announced+ms(100) {
				t.Errorf("period %d handed at %v, announced at %v: late", n, at, announced)
			}
		}
		if st := p.Stats(); st.Failovers != 1 || origins.Current() != "https://b.test" || st.FetchErrors != 0 {
			t.Errorf("failovers %d, using %s, fetch errors %d; want 1, b.test, 0", st.Failovers, origins.Current(), st.FetchErrors)
		}
	})
}
