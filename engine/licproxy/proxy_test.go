package clearkey_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/wait"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/seal"
)

// quiet is how long a test watches for a response that must not come.
const quiet = 100 * time.Millisecond

// noLeaks fails the test if goroutines it started outlive it. Call it
// first, so its cleanup runs after the server's.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

type proxyFixture struct {
	p   *clearkey.Proxy
	srv *httptest.Server
}

func newProxy(t *testing.T, cfg clearkey.ProxyConfig) *proxyFixture {
	t.Helper()
	noLeaks(t)
	p := clearkey.NewProxy(cfg)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return &proxyFixture{p: p, srv: srv}
}

type result struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (f *proxyFixture) do(ctx context.Context, method, body string) result {
	req, err := http.NewRequestWithContext(ctx, method, f.srv.URL, strings.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// ask posts a licence request for kids and returns where its result will
// arrive.
func (f *proxyFixture) ask(t *testing.T, ctx context.Context, kids ...[16]byte) <-chan result {
	t.Helper()
	body, err := clearkey.MarshalRequest(kids, "")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan result, 1)
	go func() { ch <- f.do(ctx, http.MethodPost, string(body)) }()
	return ch
}

func (f *proxyFixture) waitFor(t *testing.T, waiting int) {
	t.Helper()
	wait.For(t, 5*time.Second, fmt.Sprintf("%d waiting requests", waiting), func() bool { return f.p.Stats().Waiting == waiting })
}

func silent(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("answered before release: %d %s %v", r.status, r.body, r.err)
	case <-time.After(quiet):
	}
}

func get(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	panic("unreachable")
}

func wantKeys(t *testing.T, r result, keys ...seal.ContentKey) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got, err := clearkey.ParseLicence(r.body)
	if err != nil {
		t.Fatalf("licence %s: %v", r.body, err)
	}
	if !slices.Equal(got, keys) {
		t.Fatalf("licence keys %x, want %x", got, keys)
	}
}

func wantError(t *testing.T, r result, status int, name string, kids ...[16]byte) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var e struct {
		Error string   `json:"error"`
		KIDs  []string `json:"kids"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	var want []string
	for _, k := range kids {
		b, _ := clearkey.MarshalRequest([][16]byte{k}, "")
		var req struct{ Kids []string }
		json.Unmarshal(b, &req)
		want = append(want, req.Kids...)
	}
	if e.Error != name || !slices.Equal(e.KIDs, want) {
		t.Fatalf("error %+v, want %q %v", e, name, want)
	}
}

func event(period uint64, keys ...seal.ContentKey) receiver.Event {
	return receiver.Event{Stream: 1, Period: period, Keys: keys}
}

func TestProxyWaitsForRelease(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{})
	keys := randomKeys(t, 2)
	ch := f.ask(t, t.Context(), keys[1].KID)
	f.waitFor(t, 1)
	silent(t, ch)
	f.p.Deliver(event(5, keys...))
	r := get(t, ch)
	wantKeys(t, r, keys[1])
	if o := r.header.Get("Access-Control-Allow-Origin"); o != "*" {
		t.Errorf("Allow-Origin %q", o)
	}
	// Released keys are served at once from then on.
	wantKeys(t, get(t, f.ask(t, t.Context(), keys[0].KID, keys[1].KID)), keys...)
	if s := f.p.Stats(); s.Waiting != 0 || s.Outcomes["granted"] != 2 || s.Keys != 2 || s.Periods != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestProxyAnswersWhenAllReleased(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{})
	a, b := randomKeys(t, 1)[0], randomKeys(t, 1)[0]
	ch := f.ask(t, t.Context(), a.KID, b.KID, a.KID)
	f.waitFor(t, 1)
	f.p.Deliver(event(1, a))
	silent(t, ch)
	f.p.Deliver(event(2, b))
	wantKeys(t, get(t, ch), a, b)
}

func TestProxyTimeoutListsMissing(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{MaxWait: 300 * time.Millisecond})
	a, c := randomKeys(t, 1)[0], randomKeys(t, 1)[0]
	f.p.Deliver(event(1, a))
	start := time.Now()
	r := get(t, f.ask(t, t.Context(), a.KID, c.KID))
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("answered after %v, before MaxWait", d)
	}
	wantError(t, r, http.StatusNotFound, "not-released", c.KID)
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("no Allow-Origin on an error: the player could not read it")
	}
}

func TestProxyUnknownKID(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{MaxWait: 2 * quiet})
	f.p.Deliver(event(1, randomKeys(t, 3)...))
	unknown := randomKeys(t, 1)[0].KID
	ch := f.ask(t, t.Context(), unknown)
	silent(t, ch)
	wantError(t, get(t, ch), http.StatusNotFound, "not-released", unknown)
	if got := f.p.Stats().Outcomes["not-released"]; got != 1 {
		t.Errorf("not-released %d", got)
	}
}

func TestProxyEvicted(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{Periods: 2})
	keys := randomKeys(t, 3)
	for i, k := range keys {
		f.p.Deliver(event(uint64(i), k))
	}
	f.p.Deliver(event(2, keys[2])) // a repeat changes nothing
	f.p.Deliver(receiver.Event{Stream: 1, Period: 9, Resource: []byte("odds")})
	if s := f.p.Stats(); s.Periods != 2 || s.Keys != 2 {
		t.Fatalf("stats %+v", s)
	}
	wantError(t, get(t, f.ask(t, t.Context(), keys[0].KID, keys[1].KID)), http.StatusGone, "evicted", keys[0].KID)
	wantKeys(t, get(t, f.ask(t, t.Context(), keys[1].KID, keys[2].KID)), keys[1], keys[2])
}

func TestProxyCancelled(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), quiet)
	defer cancel()
	if r := <-f.ask(t, ctx, randomKeys(t, 1)[0].KID); r.err == nil {
		t.Fatalf("answered: %d %s", r.status, r.body)
	}
	f.waitFor(t, 0)
	wait.For(t, 5*time.Second, "the cancellation counted", func() bool { return f.p.Stats().Outcomes["cancelled"] == 1 })
}

func TestProxyPreflight(t *testing.T) {
	const origin = "https://player.example"
	f := newProxy(t, clearkey.ProxyConfig{AllowOrigin: origin})
	req, _ := http.NewRequest(http.MethodOptions, f.srv.URL, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":  origin,
		"Access-Control-Allow-Methods": "POST, OPTIONS",
		"Access-Control-Allow-Headers": "Content-Type",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	k := randomKeys(t, 1)[0]
	f.p.Deliver(event(1, k))
	if r := get(t, f.ask(t, t.Context(), k.KID)); r.header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("POST Allow-Origin %q", r.header.Get("Access-Control-Allow-Origin"))
	}
}

func TestProxyBadRequests(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{})
	for _, c := range []struct {
		name, method, body string
		status             int
		outcome            string
	}{
		{"bad json", http.MethodPost, `{"kids":["`, http.StatusBadRequest, "bad-request"},
		{"bad kid", http.MethodPost, `{"kids":["AAAA"],"type":"temporary"}`, http.StatusBadRequest, "bad-request"},
		{"persistent", http.MethodPost, `{"kids":["` + specKID1 + `"],"type":"persistent-license"}`, http.StatusBadRequest, "unsupported-type"},
		{"oversized", http.MethodPost, `{"kids":["` + specKID1 + `"],"pad":"` + strings.Repeat("x", clearkey.MaxBodySize) + `"}`, http.StatusRequestEntityTooLarge, "too-large"},
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed, "bad-method"},
	} {
		r := f.do(t.Context(), c.method, c.body)
		if r.err != nil {
			t.Fatalf("%s: %v", c.name, r.err)
		}
		if r.status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
			continue
		}
		wantError(t, r, c.status, c.outcome)
	}
	if s := f.p.Stats(); s.Outcomes["bad-request"] != 2 || s.Outcomes["too-large"] != 1 || s.Waiting != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestProxyManyWaiters(t *testing.T) {
	const n = 200
	f := newProxy(t, clearkey.ProxyConfig{})
	keys := randomKeys(t, 2)
	chs := make([]<-chan result, n)
	for i := range chs {
		chs[i] = f.ask(t, t.Context(), keys[i%2].KID)
	}
	f.waitFor(t, n)
	f.p.Deliver(event(1, keys...))
	for i, ch := range chs {
		wantKeys(t, get(t, ch), keys[i%2])
	}
	if got := f.p.Stats().Outcomes["granted"]; got != n {
		t.Errorf("granted %d", got)
	}
}

func TestProxyBusy(t *testing.T) {
	f := newProxy(t, clearkey.ProxyConfig{MaxWaiters: 2})
	k := randomKeys(t, 1)[0]
	a, b := f.ask(t, t.Context(), k.KID), f.ask(t, t.Context(), k.KID)
	f.waitFor(t, 2)
	r := get(t, f.ask(t, t.Context(), k.KID))
	wantError(t, r, http.StatusServiceUnavailable, "busy", k.KID)
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	f.p.Deliver(event(1, k))
	wantKeys(t, get(t, a), k)
	wantKeys(t, get(t, b), k)
}
