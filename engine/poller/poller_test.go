package poller_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	edgepkg "github.com/embargo-live/embargo/engine/edge"
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
	// No jitter: a failed poll's wait is exactly half its backoff step.
	return &poller.Poller{Origin: "https://origin.test", Streams: []uint32{1}, Client: c, Key: key.Key, Interval: 100 * time.Millisecond,
		Jitter: func() float64 { return 0 }}
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
		if st := p.Stats(); st.LastFetch.IsZero() || noTime(st) != (poller.Stats{Documents: 6, Added: 8}) {
			t.Errorf("stats %+v", st)
		}
		// 11 polls: a document at each announcement, 204 in between.
		if c := o.h.Counts(); c["bundles"] != 6 || c["nothing-new"] != 5 || len(c) != 2 {
			t.Errorf("origin counts %v", c)
		}
		// The origin's per-edge count of documents served, for its metrics.
		if f := o.h.EdgeFetches(); f["edge-1"] != 6 || len(f) != 1 {
			t.Errorf("origin's fetches by edge %v", f)
		}
	})
}

// TestPollerRetries: a failed poll is counted and retried after a
// backoff (100 ms, then 200 ms), asking again from the same period, so the
// edge misses nothing the origin still holds; a bundle the edge refuses is
// counted and not fetched again.
func TestPollerRetries(t *testing.T) {
	edge, _ := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		// The origin is unreachable for the first 250 ms: polls at 0 and
		// 100 ms fail, the next is at 300 ms.
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
		if st := p.Stats(); noTime(st) != (poller.Stats{Documents: 2, Refused: 2, FetchErrors: 2, Added: 4, Rejected: 1}) {
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
		// Polls at 0 and 100 ms (refused, so backing off: the next would
		// be at 300 ms).
		if st := p.Stats(); st != (poller.Stats{Refused: 2, Failing: 2}) {
			t.Errorf("stats %+v", st)
		}
	})
}

// noTime is st without LastFetch, to compare counts.
func noTime(st poller.Stats) poller.Stats {
	st.LastFetch = time.Time{}
	return st
}

// polls counts the requests that reach an origin transport, and when.
type polls struct {
	next http.RoundTripper
	mu   sync.Mutex
	at   []time.Duration
	t0   time.Time
}

func (p *polls) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.at = append(p.at, time.Since(p.t0))
	p.mu.Unlock()
	return p.next.RoundTrip(r)
}

// TestPollerBacksOff: while the origin is down the poller waits
// Interval·2^k after k failures, capped at MaxBackoff, times a jitter
// factor in [½, 1] (here ¾), instead of hammering it every Interval; it
// counts the failures and says how long since the last good fetch; once
// the origin is back it polls at its interval again.
func TestPollerBacksOff(t *testing.T) {
	edge, _ := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		down := func() bool { return time.Since(o.t0) < 10*time.Second }
		p := o.poller(edge, edge, down)
		rec := &polls{next: p.Client.Transport, t0: o.t0}
		p.Client = &http.Client{Transport: rec}
		p.MaxBackoff = 2 * time.Second
		p.Jitter = func() float64 { return 0.5 }
		var stats poller.Stats
		go func() {
			time.Sleep(9 * time.Second)
			stats = p.Stats()
		}()
		o.run(t, p, ms(11500), take)
		// Waits 150, 300, 600, 1200 ms, then 1500 ms (2 s × ¾) until the
		// origin is back, then every 100 ms.
		want := []time.Duration{0, ms(150), ms(450), ms(1050), ms(2250), ms(3750), ms(5250), ms(6750), ms(8250), ms(9750), ms(11250), ms(11350), ms(11450)}
		if !slices.Equal(rec.at, want) {
			t.Errorf("polls at %v, want %v", rec.at, want)
		}
		if stats.FetchErrors != 9 || stats.Failing != 9 || !stats.LastFetch.IsZero() {
			t.Errorf("while down: %+v", stats)
		}
		if st := p.Stats(); st.FetchErrors != 10 || st.Failing != 0 || st.Added == 0 || time.Since(st.LastFetch) > ms(100) {
			t.Errorf("after: %+v", st)
		}
	})
}

// TestPollerStartRetries: an origin that is down when the edge starts
// does not end Run: Start (the session fetch) is retried with backoff,
// and bundles flow once it answers.
func TestPollerStartRetries(t *testing.T) {
	edge, _ := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		down := func() bool { return time.Since(o.t0) < 3*time.Second }
		p := o.poller(edge, edge, down)
		starts := 0
		p.Start = func(ctx context.Context) error {
			starts++
			_, err := session.Fetch(ctx, p.Client, "https://origin.test/v1/session")
			return err
		}
		got := o.run(t, p, 5*time.Second, take)
		if len(got) == 0 || got[0].after < 3*time.Second || starts < 3 {
			t.Fatalf("%d starts, handed %v", starts, got)
		}
		if st := p.Stats(); st.FetchErrors != uint64(starts-1) || st.Failing != 0 {
			t.Errorf("stats %+v after %d starts", st, starts)
		}
	})
}

// TestPollerBusyRetried: a bundle the edge refuses as busy (edge.ErrBusy,
// its pending bundles at the limit) is handed again at each poll until the
// edge takes it; one it never takes is counted and logged as missed once
// its releaseAt has passed. The poller used to step past both for good.
func TestPollerBusyRetried(t *testing.T) {
	edge, _ := certs()
	synctest.Test(t, func(t *testing.T) {
		o := newOrigin(t)
		var logs bytes.Buffer
		p := o.poller(edge, edge, nil)
		p.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		got := o.run(t, p, ms(1050), func(b *bundle.Bundle) error {
			switch {
			case b.Period == 2 && time.Since(o.t0) < ms(150):
				return fmt.Errorf("full: %w", edgepkg.ErrBusy)
			case b.Period == 5:
				return edgepkg.ErrBusy
			}
			return nil
		})
		var twos, fives []time.Duration
		for _, h := range got {
			switch h.period {
			case 2:
				twos = append(twos, h.after)
			case 5:
				fives = append(fives, h.after)
			}
		}
		// Period 2 is taken at the third poll; period 5 (announced at
		// 400 ms, released at 1 s) is handed at every poll until then.
		if !slices.Equal(twos, []time.Duration{0, ms(100), ms(200)}) {
			t.Errorf("period 2 handed at %v", twos)
		}
		if len(fives) != 6 || fives[0] != ms(400) || fives[5] != ms(900) {
			t.Errorf("period 5 handed at %v", fives)
		}
		if st := p.Stats(); st.Missed != 1 || st.Added != 7 || st.Rejected != 0 {
			t.Errorf("stats %+v", st)
		}
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "period missed") {
			t.Errorf("missed period not logged:\n%s", logs.String())
		}
	})
}
