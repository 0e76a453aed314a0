package main

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/seal"
)

// hangable serves every host with h in memory, except that a.test, once
// hung, answers nothing until the request's deadline.
type hangable struct {
	h    http.Handler
	hung atomic.Bool
}

func (t *hangable) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == "a.test" && t.hung.Load() {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return (&memhttp.Transport{Handler: t.h}).RoundTrip(r)
}

// An edge bounds each request to an origin replica by the announce lead
// the origin's session states: a hung replica (not a refusing one) costs
// it at most that bound before the next replica answers — a quarter of a
// second at a 1 s lead, where 5 s would have cost periods their ANNOUNCE.
// An explicit -origin-timeout is honoured; one longer than the lead
// affords is warned of in one line naming the flag, the lead and the fix.
func TestOriginTimeoutFollowsLead(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		flag, lead, want time.Duration
		warn             string
	}{
		{name: "1s lead", lead: time.Second, want: 250 * time.Millisecond},
		{name: "16s lead", lead: 16 * time.Second, want: 5 * time.Second},
		{name: "lead the origin does not say", want: 5 * time.Second},
		{name: "explicit, within the lead", flag: 200 * time.Millisecond, lead: time.Second, want: 200 * time.Millisecond},
		{name: "explicit, too long for the lead", flag: 5 * time.Second, lead: time.Second, want: 5 * time.Second, warn: "-origin-timeout 5s is too long for the origin's announce lead 1s"},
		{name: "explicit, no lead said", flag: 3 * time.Second, want: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				id := seal.KeyID(pub)
				desc, _ := json.Marshal(session.Session{OriginKey: base64.StdEncoding.EncodeToString(pub), KeyID: hex.EncodeToString(id[:]), Streams: []uint32{1}, LeadMs: tc.lead.Milliseconds()})
				tr := &hangable{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Write(desc)
				})}
				client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
				origins := fetch.NewOrigins("https://a.test", "https://b.test")
				var logged bytes.Buffer
				log := slog.New(slog.NewTextHandler(&logged, nil))
				ring := seal.NewKeyRing()
				if err := originSession(t.Context(), client, origins, 2, tc.flag, ring, log); err != nil {
					t.Fatal(err)
				}
				if got := origins.Timeout(); got != tc.want {
					t.Fatalf("replica timeout %v, want %v", got, tc.want)
				}
				warnings := strings.Count(logged.String(), "level=WARN")
				switch {
				case tc.warn == "" && warnings != 0:
					t.Fatalf("warned: %s", logged.String())
				case tc.warn != "" && (warnings != 1 || !strings.Contains(logged.String(), tc.warn) || !strings.Contains(logged.String(), "set -origin-timeout to at most 250ms, or leave it unset")):
					t.Fatalf("want one warning with %q and the fix; log: %s", tc.warn, logged.String())
				}
				tr.hung.Store(true)
				start := time.Now()
				body, _, err := origins.Do(t.Context(), client, http.MethodGet, session.Path, "", 1<<20)
				if err != nil || !bytes.Equal(body, desc) || origins.Current() != "https://b.test" {
					t.Fatalf("a.test hung: %v, using %s", err, origins.Current())
				}
				if took := time.Since(start); took != tc.want {
					t.Fatalf("a hung replica cost %v, want %v", took, tc.want)
				}
			})
		})
	}
}

// A lone origin keeps -origin-timeout, or 5 s, whatever its lead: with no
// other replica to try, a slow answer cut short would only be asked again.
func TestLoneOriginKeepsItsTimeout(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	desc, _ := json.Marshal(session.Session{OriginKey: base64.StdEncoding.EncodeToString(pub), Streams: []uint32{1}, LeadMs: 1000})
	client := memhttp.Client(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(desc) }))
	for _, flag := range []time.Duration{0, 3 * time.Second} {
		origins := fetch.NewOrigins("https://a.test")
		var logged bytes.Buffer
		if err := originSession(t.Context(), client, origins, 1, flag, seal.NewKeyRing(), slog.New(slog.NewTextHandler(&logged, nil))); err != nil {
			t.Fatal(err)
		}
		if want := cmp.Or(flag, 5*time.Second); origins.Timeout() != want || strings.Contains(logged.String(), "level=WARN") {
			t.Errorf("-origin-timeout %v, one origin at a 1s lead: timeout %v, want %v; log: %s", flag, origins.Timeout(), want, logged.String())
		}
	}
}
