package keyserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// lab is a CA with origin, edge and packager certificates, and one from
// another CA.
type lab struct {
	ca                       *pki.CA
	origin, edge, pkg, rogue *pki.Cert
	pool                     *x509.CertPool
}

var shared *lab // RSA key generation is slow: one lab for the package

func newLab(t *testing.T) *lab {
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
		cfg = keyserver.ClientTLS(c.TLS(), l.pool)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// originFixture is an issuer with one event (stream 1, 200 ms periods)
// behind an HTTPS test server.
type originFixture struct {
	store  *keystore.Store
	issuer *keyserver.Issuer
	h      *keyserver.Handler
	srv    *httptest.Server
	clock  ptp.Clock
}

func newOrigin(t *testing.T, l *lab, dir string) *originFixture {
	store, err := keystore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := ptp.NewSim()
	issuer, err := keyserver.NewIssuer(store, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if issuer.Event(1) == nil {
		_, master, _ := origin.Generate()
		err := issuer.AddEvent(&keystore.Event{Stream: 1, Master: master, Keys: 2,
			Schedule: origin.Schedule{Period: 200 * time.Millisecond, Lead: 600 * time.Millisecond, PresentDelay: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
	}
	h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer, Tokens: map[string]string{"s3cret": "player-1"}, Licence: "https://x/v1/streams/{stream}/licence"})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = keyserver.ServerTLS(l.origin.TLS(), l.pool)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &originFixture{store: store, issuer: issuer, h: h, srv: srv, clock: clock}
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
	l := newLab(t)
	o := newOrigin(t, l, filepath.Join(t.TempDir(), "state"))
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

// TestPollerGetsVerifiableBundles: an edge's poller fetches the due
// periods over mTLS, the CPIX document opens with the edge's key, and
// every bundle passes the edge's own check against the session's key.
func TestPollerGetsVerifiableBundles(t *testing.T) {
	l := newLab(t)
	o := newOrigin(t, l, filepath.Join(t.TempDir(), "state"))
	sess, err := keyserver.FetchSession(context.Background(), l.client(nil), o.srv.URL+"/v1/session")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sess.PublicKey()
	ring := seal.NewKeyRing(pub)
	p := &keyserver.Poller{Origin: o.srv.URL, Streams: []uint32{1}, Client: l.client(l.edge), Key: l.edge.Key}
	bs, err := p.Fetch(context.Background(), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) < 2 {
		t.Fatalf("%d bundles for a 600 ms lead of 200 ms periods", len(bs))
	}
	for _, b := range bs {
		if _, err := bundle.Open(b, ring); err != nil {
			t.Errorf("period %d: %v", b.Period, err)
		}
	}
	// The packager's document carries the same periods' content keys.
	resp, err := l.client(l.pkg).Get(o.srv.URL + "/v1/streams/1/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := cpix.DecodePackagerKeys(doc, l.pkg.Key)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := o.store.Period(1, pk[0].Period)
	if err != nil {
		t.Fatal(err)
	}
	if len(pk[0].Keys) != 2 || pk[0].Keys[0] != stored.Keys[0] {
		t.Errorf("packager keys %v, stored %v", pk[0].Keys, stored.Keys)
	}
	// Asking past the announced periods gets nothing, not an error.
	if more, err := p.Fetch(context.Background(), 1, bs[len(bs)-1].Period+100); err != nil || len(more) != 0 {
		t.Errorf("past the window: %d bundles, %v", len(more), err)
	}
	// A document for the edge does not open with another key.
	if _, err := (&keyserver.Poller{Origin: o.srv.URL, Client: l.client(l.edge), Key: l.pkg.Key}).Fetch(context.Background(), 1, 0); err == nil {
		t.Error("bundles opened with the packager's key")
	}
}

// TestRestartKeepsKeys: a new issuer on the same state directory serves
// exactly the periods, secrets and keys the first one issued.
func TestRestartKeepsKeys(t *testing.T) {
	l := newLab(t)
	dir := filepath.Join(t.TempDir(), "state")
	a := newOrigin(t, l, dir)
	first, err := a.issuer.Window(1, 0)
	if err != nil || len(first) == 0 {
		t.Fatalf("window: %d periods, %v", len(first), err)
	}
	a.srv.Close()
	b := newOrigin(t, l, dir)
	if !b.issuer.PublicKey().Equal(a.issuer.PublicKey()) {
		t.Fatal("signing key changed across the restart")
	}
	for _, p := range first {
		got, err := b.issuer.Period(1, p.Bundle.Period)
		if err != nil {
			t.Fatal(err)
		}
		if got.Bundle.RK != p.Bundle.RK || got.Keys[0] != p.Keys[0] {
			t.Fatalf("period %d changed across the restart", p.Bundle.Period)
		}
	}
}

func TestLicence(t *testing.T) {
	l := newLab(t)
	o := newOrigin(t, l, filepath.Join(t.TempDir(), "state"))
	url := o.srv.URL + "/v1/streams/1/licence"
	m, err := keyserver.FetchMaster(context.Background(), l.client(nil), url, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if string(m) != string(o.issuer.Event(1).Master) {
		t.Fatal("licence master key differs from the event's")
	}
	if _, err := keyserver.FetchMaster(context.Background(), l.client(nil), url, "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := keyserver.FetchMaster(context.Background(), l.client(nil), o.srv.URL+"/v1/streams/9/licence", "s3cret"); err == nil {
		t.Fatal("licence for an unknown stream")
	}
}

// TestNeverIssuesThePast: a period whose release has passed and that was
// never issued stays missing rather than be made up after the fact.
func TestNeverIssuesThePast(t *testing.T) {
	l := newLab(t)
	o := newOrigin(t, l, filepath.Join(t.TempDir(), "state"))
	now, _ := o.clock.Now()
	past := o.issuer.Event(1).Schedule.Current(now.Latest) - 3
	if _, err := o.issuer.Period(1, past); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("past period: %v", err)
	}
}

// TestPollerCounts: Run hands every bundle to the edge once, and a
// document the edge cannot open is refused whole and counted.
func TestPollerCounts(t *testing.T) {
	l := newLab(t)
	o := newOrigin(t, l, filepath.Join(t.TempDir(), "state"))
	var got []*bundle.Bundle
	p := &keyserver.Poller{Origin: o.srv.URL, Streams: []uint32{1}, Client: l.client(l.edge), Key: l.edge.Key, Interval: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	p.Run(ctx, func(b *bundle.Bundle) error { got = append(got, b); return nil })
	st := p.Stats()
	if st.Added == 0 || st.Added != uint64(len(got)) || st.Refused != 0 || st.Documents == 0 {
		t.Fatalf("stats %+v for %d bundles", st, len(got))
	}
	seen := map[uint64]bool{}
	for _, b := range got {
		if seen[b.Period] {
			t.Fatalf("period %d handed over twice", b.Period)
		}
		seen[b.Period] = true
	}
	wrong := &keyserver.Poller{Origin: o.srv.URL, Streams: []uint32{1}, Client: l.client(l.edge), Key: l.pkg.Key, Interval: 20 * time.Millisecond}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel2()
	wrong.Run(ctx2, func(*bundle.Bundle) error { t.Error("a bundle from a document the key cannot open"); return nil })
	if st := wrong.Stats(); st.Refused == 0 || st.Added != 0 {
		t.Fatalf("wrong key: stats %+v", st)
	}
}
