package keyserver_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keyserver/keyservertest"
	"github.com/embargo-live/embargo/internal/realtime"
)

// BenchmarkLicenceStorm is the kickoff: viewers each presenting their own
// JWT ask the origin for the master-key licence over TLS 1.3 (a connection
// per client, kept alive), as many at once as -cpu × 16. It reports
// licences per second on this machine, the latency p50 and p99, and how
// many origin replicas the rate implies for a kickoff of 1,000,000 viewers
// within 10 s (100,000 licences/s). The load generator shares the
// machine with the origin: a lower bound for the origin alone.
//
//	go test ./engine/keyserver -run '^$' -bench LicenceStorm -benchtime 5000x
func BenchmarkLicenceStorm(b *testing.B) {
	realtime.Exclusive(b)
	l := newLab(b)
	s := newService(b, "k1")
	issuer := newIssuer(b, filepath.Join(b.TempDir(), "state"))
	v := &keyserver.Viewers{Keys: &keyserver.StaticKeys{Set: s.JWKS}, Issuer: "https://id.example", Audience: "embargo"}
	h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer, Viewers: v, Licence: "https://x/v1/streams/{stream}/licence"})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = keyserver.ServerTLS(l.origin.TLS(), l.pool)
	srv.StartTLS()
	defer srv.Close()
	url := srv.URL + "/v1/streams/1/licence"

	// One token per viewer, made before the clock starts.
	tokens := make([]string, min(b.N, 10_000))
	for i := range tokens {
		c, x := viewer()
		c.Subject = fmt.Sprintf("viewer-%d", i)
		c.IssuedAt, c.Expiry = jwt.NewNumericDate(time.Now().Add(-time.Minute)), jwt.NewNumericDate(time.Now().Add(time.Hour))
		tokens[i] = s.Token(b, c, x)
	}
	b.ResetTimer()
	// -cpu × 16 clients at once, as RunParallel with SetParallelism(16) would run.
	lat, failed, elapsed := keyservertest.Storm(context.Background(), url, tokens, 16*runtime.GOMAXPROCS(0), b.N, func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: l.pool, MinVersion: tls.VersionTLS13}}, Timeout: 30 * time.Second}
	})
	b.StopTimer()
	if failed > 0 || len(lat) != b.N {
		b.Fatalf("%d of %d licence requests failed (%d made)", failed, b.N, len(lat))
	}
	if got := h.LicenceStats()["granted"]; got != uint64(b.N) {
		b.Fatalf("granted %d licences for %d requests", got, b.N)
	}
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "licences/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(100_000/rate, "replicas-for-1M-in-10s")
}
