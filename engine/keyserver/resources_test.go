package keyserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/cpix/cpixtest"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// resourceLead is stream 100's announce lead: a resource must be
// submitted at least this long before its release.
const resourceLead = time.Second

// resourceOrigin is an issuer in dir with stream 1 (keys) and, created on
// first use, stream 100 of published resources, on clock.
func resourceOrigin(t *testing.T, dir string, clock *ptp.Sim) *keyserver.Issuer {
	t.Helper()
	store, err := keystore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := keyserver.NewIssuer(store, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if issuer.Event(100) == nil {
		_, master, _ := origin.Generate()
		s := origin.Schedule{Epoch: clock.True(), Period: 200 * time.Millisecond, Lead: resourceLead, PresentDelay: 100 * time.Millisecond}
		if err := issuer.AddEvent(&keystore.Event{Stream: 100, Master: master, Resources: true, Schedule: s}); err != nil {
			t.Fatal(err)
		}
		if err := issuer.AddEvent(&keystore.Event{Stream: 1, Master: master, Keys: 1, Schedule: s}); err != nil {
			t.Fatal(err)
		}
	}
	return issuer
}

// as is an HTTP client whose requests h serves in memory, as if over
// mutual TLS with cert.
func as(h http.Handler, cert *x509.Certificate) *http.Client {
	return &http.Client{Transport: &memhttp.Transport{Handler: h, TLS: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}}
}

func publish(t *testing.T, c *http.Client, stream int, releaseAt string, body []byte) (int, string) {
	t.Helper()
	resp, err := c.Post(fmt.Sprintf("https://origin.test/v1/streams/%d/resources?releaseAt=%s", stream, releaseAt), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPublishEndToEnd: a resource a publisher submits over the API is
// stored, fetched by an edge's poller as a CPIX bundle one lead before its
// release, carouselled, and released by the edge not before releaseAt on
// the true clock; the RELEASE's RK opens the ANNOUNCE to the very bytes
// submitted. All in virtual time, with the real handler, poller and edge.
func TestPublishEndToEnd(t *testing.T) {
	inBubble(t, func(t *testing.T, r rig) {
		l, publisher, clock, issuer, h := r.l, r.publisher, r.clock, r.issuer, r.h
		payload := []byte(`{"match":"final","odds":[1.85,3.4,4.1]}`)
		releaseAt := clock.True() + int64(3*time.Second)
		code, body := publish(t, as(h, publisher.Cert), 100, fmt.Sprint(releaseAt), payload)
		var pub keyserver.Published
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &pub) != nil || pub.Period != 0 || pub.ReleaseAt != releaseAt || pub.Bytes != len(payload) {
			t.Fatalf("publish: %d %s", code, body)
		}

		sender := &edgetest.Sender{True: clock.True}
		e, err := edge.New(edge.Config{Clock: clock, Trusted: seal.NewKeyRing(issuer.PublicKey()), Senders: []edge.Sender{sender},
			Lead: resourceLead, Rounds: 3, Repeat: 2, Spacing: time.Millisecond, Waiter: ptp.Sleeper{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		var handed []int64 // true times the poller handed the edge a bundle
		go e.Run(ctx)
		p := &poller.Poller{Origin: "https://origin.test", Streams: []uint32{100}, Client: as(h, l.edge.Cert), Key: l.edge.Key, Interval: 250 * time.Millisecond}
		err = p.Run(ctx, func(b *bundle.Bundle) error {
			handed = append(handed, clock.True())
			return e.Add(b)
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(handed) != 1 || handed[0] < releaseAt-int64(resourceLead) {
			t.Fatalf("bundle handed at %v, announce time %d", handed, releaseAt-int64(resourceLead))
		}
		releases := sender.Of(wire.TypeRelease)
		if len(releases) == 0 {
			t.Fatal("no RELEASE sent")
		}
		var rel wire.Release
		for _, s := range releases {
			if s.At < releaseAt {
				t.Fatalf("RELEASE sent %v early", time.Duration(releaseAt-s.At))
			}
			if err := rel.Decode(s.Datagram); err != nil || rel.Stream != 100 || rel.Period != 0 {
				t.Fatalf("RELEASE %+v: %v", rel, err)
			}
		}
		stored, err := issuer.Period(100, 0)
		if err != nil {
			t.Fatal(err)
		}
		op, err := bundle.Open(&bundle.Bundle{Stream: 100, Period: 0, ReleaseAt: releaseAt, PresentAt: pub.PresentAt, RK: rel.RK, Shards: shards(sender, 100, 0)}, seal.NewKeyRing(issuer.PublicKey()))
		if err != nil {
			t.Fatal(err)
		}
		if op.Decoded.PayloadType != wire.PayloadOpaque || len(stored.Resource) != len(payload) {
			t.Fatalf("payload type %d", op.Decoded.PayloadType)
		}
		got, err := seal.OpenAnnounce(nil, op.Body, &op.Decoded, &rel.RK)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("released resource %q, %v; want %q", got, err, payload)
		}
	})
}

// shards are the distinct ANNOUNCE datagrams the edge carouselled for a
// period, in index order.
func shards(s *edgetest.Sender, stream uint32, period uint64) [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	for _, a := range s.Of(wire.TypeAnnounce) {
		if a.Stream == stream && a.Period == period && !seen[string(a.Datagram)] {
			seen[string(a.Datagram)] = true
			out = append(out, a.Datagram)
		}
	}
	return out
}

// rig is a lab, a publisher's certificate, and a resource origin in dir
// on a simulated clock behind its handler.
type rig struct {
	l         *lab
	publisher *pki.Cert
	clock     *ptp.Sim
	dir       string
	issuer    *keyserver.Issuer
	h         http.Handler
}

// inBubble runs f with a rig in a synctest bubble.
func inBubble(t *testing.T, f func(t *testing.T, r rig)) {
	l := newLab(t)
	publisher := mustClient(t, l, "publisher-1", pki.RolePublisher)
	synctest.Test(t, func(t *testing.T) {
		r := rig{l: l, publisher: publisher, clock: ptp.NewSim(), dir: filepath.Join(t.TempDir(), "state")}
		r.issuer = resourceOrigin(t, r.dir, r.clock)
		r.h = keyserver.NewHandler(keyserver.ServerConfig{Issuer: r.issuer})
		f(t, r)
	})
}

func mustClient(t *testing.T, l *lab, name, role string) *pki.Cert {
	c, err := l.ca.Client(name, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPublishRefusals: oversized, late, out-of-order, duplicate, too many
// pending, far-future and misdirected submissions are refused with a
// status and a reason, and store nothing; a restart keeps what was
// published and numbers the next resource after it.
func TestPublishRefusals(t *testing.T) {
	inBubble(t, func(t *testing.T, r rig) {
		l, publisher, clock, dir, h := r.l, r.publisher, r.clock, r.dir, r.h
		c := as(h, publisher.Cert)
		t0 := clock.True()
		at := func(d time.Duration) string { return fmt.Sprint(t0 + int64(d)) }
		if code, body := publish(t, c, 100, at(5*time.Second), []byte("odds v1")); code != http.StatusCreated {
			t.Fatalf("first: %d %s", code, body)
		}
		for _, tc := range []struct {
			name   string
			client *http.Client
			stream int
			at     string
			body   []byte
			code   int
			reason string
		}{
			{"duplicate", c, 100, at(5 * time.Second), []byte("odds v1"), 409, "period 0 holds these bytes"},
			{"late: less than the lead ahead", c, 100, at(resourceLead - time.Millisecond), []byte("odds v2"), 422, "at least the stream's lead (1s)"},
			{"released already", c, 100, at(-time.Second), []byte("odds v2"), 422, "at least the stream's lead"},
			{"out of order", c, 100, at(4 * time.Second), []byte("odds v2"), 422, "not after stream 100 period 0"},
			{"same instant, other bytes", c, 100, at(5 * time.Second), []byte("odds v2"), 422, "not after"},
			{"beyond the horizon", c, 100, at(2 * time.Hour), []byte("odds v2"), 422, "beyond 1h0m0s"},
			{"oversized", c, 100, at(6 * time.Second), make([]byte, keyserver.MaxResource+1), 413, "1 to 65364 bytes"},
			{"empty", c, 100, at(6 * time.Second), nil, 413, "0 bytes"},
			{"releaseAt not a number", c, 100, "soon", []byte("x"), 400, "TAI nanoseconds"},
			{"releaseAt with a sign", c, 100, "+" + at(6*time.Second), []byte("x"), 400, "TAI nanoseconds"},
			{"a key stream", c, 1, at(6 * time.Second), []byte("x"), 400, "rotates keys"},
			{"no such stream", c, 7, at(6 * time.Second), []byte("x"), 404, "stream 7"},
			{"a packager's certificate", as(h, l.pkg.Cert), 100, at(6 * time.Second), []byte("x"), 403, "role"},
		} {
			if code, body := publish(t, tc.client, tc.stream, tc.at, tc.body); code != tc.code || !strings.Contains(body, tc.reason) {
				t.Errorf("%s: %d %q, want %d and %q", tc.name, code, strings.TrimSpace(body), tc.code, tc.reason)
			}
		}
		// Up to MaxPending wait for release; one more is refused.
		for n := 1; n < keyserver.MaxPending; n++ {
			if code, body := publish(t, c, 100, at(time.Duration(5+n)*time.Second), []byte{byte(n)}); code != http.StatusCreated {
				t.Fatalf("pending %d: %d %s", n, code, body)
			}
		}
		if code, body := publish(t, c, 100, at(time.Minute), []byte("one too many")); code != http.StatusTooManyRequests {
			t.Errorf("over MaxPending: %d %s", code, body)
		}
		// After a restart the resources are still there, and once the first
		// is released the next submission is numbered after the last.
		reopened := resourceOrigin(t, dir, clock)
		p, err := reopened.Period(100, 0)
		if err != nil || string(p.Resource) != "odds v1" {
			t.Fatalf("after restart: %v, %v", p, err)
		}
		time.Sleep(5 * time.Second)
		got, err := reopened.Publish(100, t0+int64(time.Minute), []byte("next"))
		if err != nil || got.Bundle.Period != keyserver.MaxPending {
			t.Fatalf("after restart: period %v, %v; want %d", got, err, keyserver.MaxPending)
		}
	})
}

// TestServedDocumentsValid: every kind of CPIX document the origin serves
// — bundles of a key stream and of a resource stream to an edge, content
// keys to a packager — is valid against the CPIX 2.4 and 2.3.1 schemas.
// (SPEKE answers are checked in TestSPEKE.)
func TestServedDocumentsValid(t *testing.T) {
	inBubble(t, func(t *testing.T, r rig) {
		l, publisher, clock, h := r.l, r.publisher, r.clock, r.h
		if code, body := publish(t, as(h, publisher.Cert), 100, fmt.Sprint(clock.True()+int64(2*time.Second)), []byte("unlock")); code != http.StatusCreated {
			t.Fatalf("publish: %d %s", code, body)
		}
		time.Sleep(time.Second + time.Millisecond) // within the resource's lead
		for _, c := range []struct {
			cert *x509.Certificate
			path string
		}{
			{l.edge.Cert, "/v1/streams/1/bundles"},
			{l.edge.Cert, "/v1/streams/100/bundles"},
			{l.pkg.Cert, "/v1/streams/1/keys"},
		} {
			resp, err := as(h, c.cert).Get("https://origin.test" + c.path)
			if err != nil {
				t.Fatal(err)
			}
			doc, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", c.path, resp.StatusCode, doc)
			}
			cpixtest.Validate(t, doc)
		}
	})
}
