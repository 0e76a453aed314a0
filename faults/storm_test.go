//go:build linux

package faults

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keyserver/keyservertest"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/internal/realtime"
)

// TestLicenceStorm is the kickoff's licence storm with the load generator
// on another host (namespace) than the origin, as viewers would be: 64
// clients, each its own TLS 1.3 connection kept alive, ask for the
// master-key licence with their viewers' own JWTs, 6,000 requests in all
// (bounded by count and by a minute). Every request must be granted; the
// RESULT line gives licences per second, latency p50 and p99, and the
// replicas a 1,000,000-viewer kickoff within 10 s would need at that rate.
// Both sides share this machine's cores: a lower bound for an origin with
// the machine to itself.
func TestLicenceStorm(t *testing.T) {
	realtime.Exclusive(t)
	const (
		clients  = 64
		requests = 6000
		viewers  = 2000
		limit    = time.Minute
	)
	lab := netnstest.New(t, 2)
	originHost, viewerHost := lab.Host(0), lab.Host(1)

	store, err := keystore.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := keyserver.NewIssuer(store, offsetClock(0, time.Microsecond), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, master, _ := origin.Generate()
	if err := issuer.AddEvent(&keystore.Event{Stream: stream, Master: master, Keys: 2,
		Schedule: origin.Schedule{Epoch: truth(), Period: 2 * time.Second, Lead: 4 * time.Second, PresentDelay: 2 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	svc := keyservertest.NewService(t, "k1")
	h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer,
		Viewers: &keyserver.Viewers{Keys: &keyserver.StaticKeys{Set: svc.JWKS}, Issuer: "https://id.example", Audience: "embargo"}})
	ca, err := pki.NewCA("storm CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("origin", []string{originHost.IPv4.String()}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert.Cert)
	addr := netip.AddrPortFrom(originHost.IPv4, 8443)
	var ln net.Listener
	if err := originHost.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: keyserver.ServerTLS(cert.TLS(), pool)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	// One token per viewer, made before the clock starts.
	tokens := make([]string, viewers)
	for i := range tokens {
		tokens[i] = svc.Token(t, jwt.Claims{Issuer: "https://id.example", Subject: fmt.Sprintf("viewer-%d", i), Audience: jwt.Audience{"embargo"},
			IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Minute)), Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))},
			map[string]any{"embargo_streams": []uint32{stream}})
	}
	url := fmt.Sprintf("https://%s/v1/streams/%d/licence", addr, stream)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	lat, failed, elapsed := keyservertest.Storm(ctx, url, tokens, clients, requests, func() *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, DialContext: atkDialer(viewerHost)}}
	})
	if failed > 0 || len(lat) != requests {
		t.Fatalf("%d of %d licence requests failed (%d made in %v)", failed, requests, len(lat), elapsed)
	}
	if got := h.LicenceStats()["granted"]; got != requests {
		t.Fatalf("granted %d licences for %d requests", got, requests)
	}
	rate := float64(requests) / elapsed.Seconds()
	result(t, "%d licences (ES256 JWT per viewer, %d viewers, %d clients over TLS 1.3 from another namespace) in %v: %.0f licences/s, p50 %v, p99 %v; "+
		"a 1,000,000-viewer kickoff within 10 s (100,000/s) needs %.0f origin replicas at this rate",
		requests, viewers, clients, elapsed.Round(time.Millisecond), rate, lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)*99/100].Round(100*time.Microsecond), 100_000/rate)
}
