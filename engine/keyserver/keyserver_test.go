package keyserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/engine/cpix/cpixtest"
	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/internal/realtime"
)

// lab is a CA with origin, edge and packager certificates, and one from
// another CA.
type lab struct {
	ca                       *pki.CA
	origin, edge, pkg, rogue *pki.Cert
	pool                     *x509.CertPool
}

var shared *lab // RSA key generation is slow: one lab for the package

func newLab(t testing.TB) *lab {
	if shared != nil {
		return shared
	}
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("rogue CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{ca: ca, pool: x509.NewCertPool()}
	l.pool.AddCert(ca.Cert.Cert)
	must := func(c *pki.Cert, err error) *pki.Cert {
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	l.origin = must(ca.Server("origin", []string{"127.0.0.1"}, time.Hour))
	l.edge = must(ca.Client("edge-1", pki.RoleEdge, time.Hour))
	l.pkg = must(ca.Client("packager-1", pki.RolePackager, time.Hour))
	l.rogue = must(other.Client("edge-rogue", pki.RoleEdge, time.Hour))
	shared = l
	return l
}

func (l *lab) client(c *pki.Cert) *http.Client {
	cfg := &tls.Config{RootCAs: l.pool, MinVersion: tls.VersionTLS13}
	if c != nil {
		cfg = poller.ClientTLS(c.TLS(), l.pool)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// originFixture is an issuer with one event (stream 1, 200 ms periods)
// behind an HTTPS test server.
type originFixture struct {
	issuer *keyserver.Issuer
	h      *keyserver.Handler
	srv    *httptest.Server
}

func newOrigin(t *testing.T, l *lab) *originFixture {
	issuer := newIssuer(t, filepath.Join(t.TempDir(), "state"))
	h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer, Tokens: map[string]string{"s3cret": "player-1"}, Licence: "https://x/v1/streams/{stream}/licence"})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = keyserver.ServerTLS(l.origin.TLS(), l.pool)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &originFixture{issuer: issuer, h: h, srv: srv}
}

func status(t *testing.T, c *http.Client, method, url string) int {
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMutualTLS: only an edge certificate from the origin's CA gets
// bundles, only a packager's gets content keys; a certificate from
// another CA fails the handshake.
func TestMutualTLS(t *testing.T) {
	realtime.Exclusive(t)
	l := newLab(t)
	o := newOrigin(t, l)
	bundles := o.srv.URL + "/v1/streams/1/bundles"
	keys := o.srv.URL + "/v1/streams/1/keys"
	for _, c := range []struct {
		name string
		cert *pki.Cert
		url  string
		want int
	}{
		{"edge gets bundles", l.edge, bundles, 200},
		{"packager gets keys", l.pkg, keys, 200},
		{"no certificate", nil, bundles, 403},
		{"packager asks for bundles", l.pkg, bundles, 403},
		{"edge asks for keys", l.edge, keys, 403},
		// A certificate from another CA is not among those the server asks
		// for, so the client sends none: refused all the same.
		{"other CA", l.rogue, bundles, 403},
		{"unknown stream", l.edge, o.srv.URL + "/v1/streams/9/bundles", 404},
		{"bad from", l.edge, bundles + "?from=x", 400},
	} {
		if got := status(t, l.client(c.cert), http.MethodGet, c.url); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	if n := o.h.Counts()["forbidden"]; n != 4 {
		t.Errorf("forbidden count %d, want 4", n)
	}
}

// TestLicence: the master key goes to a bearer of a configured token, over
// real HTTPS, through the device's client (package session).
func TestLicence(t *testing.T) {
	realtime.Exclusive(t)
	l := newLab(t)
	o := newOrigin(t, l)
	url := o.srv.URL + "/v1/streams/1/licence"
	m, tok, err := session.FetchLicence(context.Background(), l.client(nil), url, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if string(m) != string(o.issuer.Event(1).Master) {
		t.Fatal("licence master key differs from the event's")
	}
	// The licence carries a subscription token an edge checks offline
	// with the origin key: living DefaultTokenLife, no longer.
	ring := seal.NewKeyRing(o.issuer.PublicKey())
	now := ptp.SystemTAI()
	if _, err := ring.VerifyToken(tok, now, int64(keyserver.DefaultTokenLife)); err != nil {
		t.Fatalf("subscription token %x: %v", tok, err)
	}
	if _, err := ring.VerifyToken(tok, now+int64(keyserver.DefaultTokenLife)+int64(time.Second), int64(time.Hour)); err == nil {
		t.Fatal("the subscription token outlives DefaultTokenLife")
	}
	if _, err := session.FetchMaster(context.Background(), l.client(nil), url, "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := session.FetchMaster(context.Background(), l.client(nil), o.srv.URL+"/v1/streams/9/licence", "s3cret"); err == nil {
		t.Fatal("licence for an unknown stream")
	}
}

// TestPackagerKeys: a packager's CPIX document opens with its key and
// carries the stored content keys of the announced periods.
func TestPackagerKeys(t *testing.T) {
	realtime.Exclusive(t)
	l := newLab(t)
	o := newOrigin(t, l)
	resp, err := l.client(l.pkg).Get(o.srv.URL + "/v1/streams/1/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	cpixtest.Validate(t, doc)
	pk, err := cpix.DecodePackagerKeys(doc, l.pkg.Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(pk) == 0 {
		t.Fatal("no periods in the packager's document")
	}
	for _, p := range pk {
		stored, err := o.issuer.Period(1, p.Period)
		if err != nil {
			t.Fatal(err)
		}
		if p.ReleaseAt != stored.Bundle.ReleaseAt {
			t.Errorf("period %d: released at %d, stored %d", p.Period, p.ReleaseAt, stored.Bundle.ReleaseAt)
		}
		if !slices.Equal(p.Keys, stored.Keys) {
			t.Errorf("period %d: packager keys %v, stored %v", p.Period, p.Keys, stored.Keys)
		}
		if want := stored.Bundle.PresentAt + int64(issuerSchedule.Period); p.Start != stored.Bundle.PresentAt || p.End != want {
			t.Errorf("period %d: keys for [%d, %d), want [%d, %d)", p.Period, p.Start, p.End, stored.Bundle.PresentAt, want)
		}
	}
}
