package poller_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// The poller's tests run in virtual time (testing/synctest) against the
// real origin handler, called in memory through memhttp: no socket, so
// polls, retries and what the edge is handed are exact. The TLS handshake
// itself is tested over real HTTPS in package keyserver.

// certs are an edge's and a packager's client certificates. RSA key
// generation is slow: one pair for the package.
var certs = sync.OnceValues(func() (edge, pkg *pki.Cert) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		panic(err)
	}
	if edge, err = ca.Client("edge-1", pki.RoleEdge, time.Hour); err != nil {
		panic(err)
	}
	if pkg, err = ca.Client("packager-1", pki.RolePackager, time.Hour); err != nil {
		panic(err)
	}
	return edge, pkg
})

// down fails every request while origin is down, as an unreachable
// origin would, and otherwise passes it to next.
type down struct {
	next   http.RoundTripper
	origin func() bool
}

var errDown = errors.New("origin unreachable")

func (d down) RoundTrip(r *http.Request) (*http.Response, error) {
	if d.origin() {
		return nil, errDown
	}
	return d.next.RoundTrip(r)
}

// originLab is an origin issuing stream 1 (period p released p·200 ms
// after the test starts, announced 600 ms before) behind its real handler.
type originLab struct {
	h  *keyserver.Handler
	t0 time.Time
}

// newOrigin starts the origin's issuer, ticking every 50 ms, for the
// bubble's lifetime.
func newOrigin(t *testing.T) *originLab {
	store, err := keystore.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	clock := ptp.NewSim()
	issuer, err := keyserver.NewIssuer(store, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, master, _ := origin.Generate()
	err = issuer.AddEvent(&keystore.Event{Stream: 1, Master: master, Keys: 1, Schedule: origin.Schedule{
		Epoch: clock.True(), Period: 200 * time.Millisecond, Lead: 600 * time.Millisecond, PresentDelay: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); issuer.Run(ctx, 50*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	return &originLab{h: keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer}), t0: time.Now()}
}

// poller polls o as if over mutual TLS with cert, opening documents with
// key's private key. While isDown returns true, its polls fail.
func (o *originLab) poller(cert *pki.Cert, key *pki.Cert, isDown func() bool) *poller.Poller {
	var rt http.RoundTripper = &memhttp.Transport{Handler: o.h, TLS: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert.Cert}}}}
	if isDown != nil {
		rt = down{next: rt, origin: isDown}
	}
	c := &http.Client{Transport: rt}
	return &poller.Poller{Origin: "https://origin.test", Streams: []uint32{1}, Client: c, Key: key.Key, Interval: 100 * time.Millisecond}
}

// handed is one bundle the poller gave the edge, and when.
type handed struct {
	period uint64
	after  time.Duration
}

// run polls until the virtual time until, between polls, and returns what
// the edge was handed. add decides whether the edge takes a bundle.
func (o *originLab) run(t *testing.T, p *poller.Poller, until time.Duration, add func(*bundle.Bundle) error) []handed {
	t.Helper()
	var got []handed
	ctx, cancel := context.WithTimeout(t.Context(), until)
	defer cancel()
	err := p.Run(ctx, func(b *bundle.Bundle) error {
		got = append(got, handed{b.Period, time.Since(o.t0)})
		return add(b)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v", err)
	}
	return got
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func take(*bundle.Bundle) error { return nil }

// TestPollerGetsVerifiableBundles: Fetch gets the announced periods as a
// CPIX document that opens with the edge's key, and every bundle passes
// the edge's own check against the session's origin key.
func TestPollerGetsVerifiableBundles(t *testing.T) {
	edge, pkg := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		anon := memhttp.Client(o.h)
		sess, err := session.Fetch(t.Context(), anon, "https://origin.test/v1/session")
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := sess.PublicKey()
		ring := seal.NewKeyRing(pub)
		p := o.poller(edge, edge, nil)
		bs, err := p.Fetch(t.Context(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, b := range bs {
			got = append(got, b.Period)
			if _, err := bundle.Open(b, ring); err != nil {
				t.Errorf("period %d: %v", b.Period, err)
			}
		}
		if want := []uint64{1, 2, 3}; !slices.Equal(got, want) {
			t.Fatalf("periods %v, want %v (600 ms lead of 200 ms periods)", got, want)
		}
		// Asking past the announced periods gets nothing, not an error.
		if more, err := p.Fetch(t.Context(), 1, 4); err != nil || more != nil {
			t.Errorf("past the window: %d bundles, %v", len(more), err)
		}
		// A document for the edge does not open with another key.
		if _, err := o.poller(edge, pkg, nil).Fetch(t.Context(), 1, 0); err == nil {
			t.Error("bundles opened with the packager's key")
		}
		// A packager's certificate gets no bundles.
		if _, err := o.poller(pkg, pkg, nil).Fetch(t.Context(), 1, 0); err == nil {
			t.Error("bundles for a packager's certificate")
		}
	})
}

// TestPollerCadence: Run polls at once and then every Interval, asks only
// for periods after those it has, and hands the edge each period once, at
// the first poll after its announce time.
func TestPollerCadence(t *testing.T) {
	edge, _ := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		p := o.poller(edge, edge, nil)
		got := o.run(t, p, ms(1050), take)
		// Periods 1..3 are announced at the start; period p ≥ 4 at
		// p·200 − 600 ms, on a poll.
		want := []handed{{1, 0}, {2, 0}, {3, 0}, {4, ms(200)}, {5, ms(400)}, {6, ms(600)}, {7, ms(800)}, {8, ms(1000)}}
		if !slices.Equal(got, want) {
			t.Fatalf("handed %v, want %v", got, want)
		}
		if st := p.Stats(); st != (poller.Stats{Documents: 6, Added: 8}) {
			t.Errorf("stats %+v", st)
		}
		// 11 polls: a document at each announcement, 204 in between.
		if c := o.h.Counts(); c["bundles"] != 6 || c["nothing-new"] != 5 || len(c) != 2 {
			t.Errorf("origin counts %v", c)
		}
	})
}

// TestPollerRetries: a failed poll is counted and retried at the next
// tick, asking again from the same period, so the edge misses nothing
// the origin still holds; a bundle the edge refuses is counted and not
// fetched again.
func TestPollerRetries(t *testing.T) {
	edge, _ := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		// The origin is unreachable for the first 250 ms: polls at 0, 100
		// and 200 ms fail.
		down := func() bool { return time.Since(o.t0) < ms(250) }
		p := o.poller(edge, edge, down)
		got := o.run(t, p, ms(450), func(b *bundle.Bundle) error {
			if b.Period == 2 {
				return errors.New("already held")
			}
			return nil
		})
		// At 300 ms, period 1 (released at 200 ms) is still in the window,
		// with 2..4; period 5 follows at 400 ms.
		want := []handed{{1, ms(300)}, {2, ms(300)}, {3, ms(300)}, {4, ms(300)}, {5, ms(400)}}
		if !slices.Equal(got, want) {
			t.Fatalf("handed %v, want %v", got, want)
		}
		if st := p.Stats(); st != (poller.Stats{Documents: 2, Refused: 3, Added: 4, Rejected: 1}) {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestPollerRefusesWholeDocuments: a document the edge's key cannot open
// is refused whole at every poll, and nothing reaches the edge.
func TestPollerRefusesWholeDocuments(t *testing.T) {
	edge, pkg := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		p := o.poller(edge, pkg, nil)
		got := o.run(t, p, ms(250), func(*bundle.Bundle) error {
			t.Error("a bundle from a document the key cannot open")
			return nil
		})
		if len(got) != 0 {
			t.Errorf("handed %v", got)
		}
		if st := p.Stats(); st != (poller.Stats{Refused: 3}) {
			t.Errorf("stats %+v", st)
		}
	})
}
