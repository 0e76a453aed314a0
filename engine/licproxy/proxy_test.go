package licproxy_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/licproxy"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/seal"
)

// Every test runs in a synctest bubble: waits are virtual, so a test
// asserts exactly when a request is answered, and a goroutine left
// waiting fails the test as a deadlock instead of leaking.

// specKID1 is a key id from EME §9.1.3's example.
const specKID1 = "LwVHf8JLtPrv2GUXFW2v_A"

func randomKeys(n int) []seal.ContentKey {
	keys := make([]seal.ContentKey, n)
	for i := range keys {
		rand.Read(keys[i].KID[:])
		rand.Read(keys[i].Key[:])
	}
	return keys
}

type result struct {
	status int
	header http.Header
	body   []byte
	at     time.Time // when the handler answered
}

// do serves one request in memory: no socket, so it may run in a bubble.
// Each of edit changes the request first.
func do(p *licproxy.Proxy, ctx context.Context, method, body string, edit ...func(*http.Request)) result {
	req := httptest.NewRequestWithContext(ctx, method, "http://device.local/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for _, e := range edit {
		e(req)
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	return result{status: rec.Code, header: rec.Result().Header, body: rec.Body.Bytes(), at: time.Now()}
}

// ask posts a licence request for kids and returns where its result will
// arrive.
func ask(t *testing.T, p *licproxy.Proxy, ctx context.Context, kids ...[16]byte) <-chan result {
	t.Helper()
	return askAs(t, p, ctx, nil, kids...)
}

// askAs is ask with the request changed by edit.
func askAs(t *testing.T, p *licproxy.Proxy, ctx context.Context, edit func(*http.Request), kids ...[16]byte) <-chan result {
	t.Helper()
	body, err := clearkey.MarshalRequest(kids, "")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan result, 1)
	go func() {
		if edit == nil {
			edit = func(*http.Request) {}
		}
		ch <- do(p, ctx, http.MethodPost, string(body), edit)
	}()
	return ch
}

// from sets a request's Origin header (none if empty) and remote address.
func from(origin, remote string) func(*http.Request) {
	return func(r *http.Request) {
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		r.RemoteAddr = remote
	}
}

// settle waits until every goroutine in the bubble is blocked and checks
// how many requests are waiting for keys.
func settle(t *testing.T, p *licproxy.Proxy, waiting int) {
	t.Helper()
	synctest.Wait()
	if got := p.Stats().Waiting; got != waiting {
		t.Fatalf("%d requests waiting, want %d", got, waiting)
	}
}

// silent checks that a request has not been answered yet.
func silent(t *testing.T, ch <-chan result) {
	t.Helper()
	synctest.Wait()
	select {
	case r := <-ch:
		t.Fatalf("answered before release: %d %s", r.status, r.body)
	default:
	}
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
	synctest.Test(t, func(t *testing.T) {
		p := licproxy.New(licproxy.Config{})
		keys := randomKeys(2)
		ch := ask(t, p, t.Context(), keys[1].KID)
		settle(t, p, 1)
		time.Sleep(5 * time.Second) // an early ask: well inside MaxWait
		silent(t, ch)
		released := time.Now()
		p.Deliver(event(5, keys...))
		r := <-ch
		wantKeys(t, r, keys[1])
		if !r.at.Equal(released) {
			t.Errorf("answered %v after the release, want at once", r.at.Sub(released))
		}
		if o := r.header.Get("Access-Control-Allow-Origin"); o != "" {
			t.Errorf("Allow-Origin %q to a request without an Origin", o)
		}
		// Released keys are served at once from then on.
		wantKeys(t, do(p, t.Context(), http.MethodPost, request(t, keys[0].KID, keys[1].KID)), keys...)
		if s := p.Stats(); s.Waiting != 0 || s.Outcomes["granted"] != 2 || s.Keys != 2 || s.Periods != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

func request(t *testing.T, kids ...[16]byte) string {
	t.Helper()
	b, err := clearkey.MarshalRequest(kids, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProxyAnswersWhenAllReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := licproxy.New(licproxy.Config{})
		a, b := randomKeys(1)[0], randomKeys(1)[0]
		ch := ask(t, p, t.Context(), a.KID, b.KID, a.KID)
		settle(t, p, 1)
		p.Deliver(event(1, a))
		silent(t, ch)
		settle(t, p, 1)
		time.Sleep(time.Second)
		released := time.Now()
		p.Deliver(event(2, b))
		r := <-ch
		wantKeys(t, r, a, b)
		if !r.at.Equal(released) {
			t.Errorf("answered %v after the last release, want at once", r.at.Sub(released))
		}
	})
}

func TestProxyTimeoutListsMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxWait = 300 * time.Millisecond
		const player = "https://player.example"
		p := licproxy.New(licproxy.Config{MaxWait: maxWait, AllowOrigins: []string{player}})
		a, c := randomKeys(1)[0], randomKeys(1)[0]
		p.Deliver(event(1, a))
		start := time.Now()
		r := <-askAs(t, p, t.Context(), from(player, "127.0.0.1:1"), a.KID, c.KID)
		if d := r.at.Sub(start); d != maxWait {
			t.Errorf("answered after %v, want exactly MaxWait %v", d, maxWait)
		}
		wantError(t, r, http.StatusNotFound, "not-released", c.KID)
		if r.header.Get("Access-Control-Allow-Origin") != player {
			t.Error("no Allow-Origin on an error: the player could not read it")
		}
	})
}

// TestProxyReleaseJustBeforeTheDeadline: keys released a nanosecond
// before the wait runs out are served, at once.
func TestProxyReleaseJustBeforeTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxWait = time.Second
		p := licproxy.New(licproxy.Config{MaxWait: maxWait})
		k := randomKeys(1)[0]
		start := time.Now()
		ch := ask(t, p, t.Context(), k.KID)
		settle(t, p, 1)
		time.Sleep(maxWait - time.Nanosecond)
		p.Deliver(event(1, k))
		r := <-ch
		wantKeys(t, r, k)
		if d := r.at.Sub(start); d != maxWait-time.Nanosecond {
			t.Errorf("answered after %v, want %v", d, maxWait-time.Nanosecond)
		}
	})
}

func TestProxyUnknownKID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxWait = 200 * time.Millisecond
		p := licproxy.New(licproxy.Config{MaxWait: maxWait})
		p.Deliver(event(1, randomKeys(3)...))
		unknown := randomKeys(1)[0].KID
		start := time.Now()
		ch := ask(t, p, t.Context(), unknown)
		silent(t, ch)
		r := <-ch
		wantError(t, r, http.StatusNotFound, "not-released", unknown)
		if d := r.at.Sub(start); d != maxWait {
			t.Errorf("answered after %v, want %v", d, maxWait)
		}
		if got := p.Stats().Outcomes["not-released"]; got != 1 {
			t.Errorf("not-released %d", got)
		}
	})
}

func TestProxyEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := licproxy.New(licproxy.Config{Periods: 2})
		keys := randomKeys(3)
		for i, k := range keys {
			p.Deliver(event(uint64(i), k))
		}
		p.Deliver(event(2, keys[2])) // a repeat changes nothing
		p.Deliver(receiver.Event{Stream: 1, Period: 9, Resource: []byte("odds")})
		if s := p.Stats(); s.Periods != 2 || s.Keys != 2 {
			t.Fatalf("stats %+v", s)
		}
		start := time.Now()
		r := do(p, t.Context(), http.MethodPost, request(t, keys[0].KID, keys[1].KID))
		wantError(t, r, http.StatusGone, "evicted", keys[0].KID)
		if !r.at.Equal(start) {
			t.Errorf("an evicted key was refused after %v, want at once", r.at.Sub(start))
		}
		wantKeys(t, do(p, t.Context(), http.MethodPost, request(t, keys[1].KID, keys[2].KID)), keys[1], keys[2])
	})
}

func TestProxyCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const gone = 100 * time.Millisecond
		p := licproxy.New(licproxy.Config{})
		ctx, cancel := context.WithTimeout(t.Context(), gone)
		defer cancel()
		start := time.Now()
		k := randomKeys(1)[0]
		r := <-ask(t, p, ctx, k.KID)
		wantError(t, r, http.StatusNotFound, "cancelled", k.KID)
		if d := r.at.Sub(start); d != gone {
			t.Errorf("gave up after %v, want when the client left (%v)", d, gone)
		}
		if s := p.Stats(); s.Waiting != 0 || s.Outcomes["cancelled"] != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestProxyPreflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const origin = "https://player.example"
		p := licproxy.New(licproxy.Config{AllowOrigins: []string{origin}})
		req := httptest.NewRequest(http.MethodOptions, "http://device.local/", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			t.Fatalf("status %d", rec.Code)
		}
		for k, v := range map[string]string{
			"Access-Control-Allow-Origin":  origin,
			"Access-Control-Allow-Methods": "POST, OPTIONS",
			"Access-Control-Allow-Headers": "Content-Type",
		} {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		k := randomKeys(1)[0]
		p.Deliver(event(1, k))
		if r := do(p, t.Context(), http.MethodPost, request(t, k.KID), from(origin, "127.0.0.1:1")); r.header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("POST Allow-Origin %q", r.header.Get("Access-Control-Allow-Origin"))
		}
		if got := p.Stats().Outcomes["preflight"]; got != 1 {
			t.Errorf("preflight %d", got)
		}
	})
}

func TestProxyBadRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := licproxy.New(licproxy.Config{})
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
			r := do(p, t.Context(), c.method, c.body)
			if r.status != c.status {
				t.Errorf("%s: status %d, want %d: %s", c.name, r.status, c.status, r.body)
				continue
			}
			wantError(t, r, c.status, c.outcome)
		}
		if s := p.Stats(); s.Outcomes["bad-request"] != 2 || s.Outcomes["too-large"] != 1 || s.Waiting != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestProxyManyWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		p := licproxy.New(licproxy.Config{MaxWaitersPerClient: n})
		keys := randomKeys(2)
		chs := make([]<-chan result, n)
		for i := range chs {
			chs[i] = ask(t, p, t.Context(), keys[i%2].KID)
		}
		settle(t, p, n)
		released := time.Now()
		p.Deliver(event(1, keys...))
		for i, ch := range chs {
			r := <-ch
			wantKeys(t, r, keys[i%2])
			if !r.at.Equal(released) {
				t.Fatalf("request %d answered %v after the release", i, r.at.Sub(released))
			}
		}
		if got := p.Stats().Outcomes["granted"]; got != n {
			t.Errorf("granted %d", got)
		}
	})
}

func TestProxyBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := licproxy.New(licproxy.Config{MaxWaiters: 2})
		k := randomKeys(1)[0]
		a, b := ask(t, p, t.Context(), k.KID), ask(t, p, t.Context(), k.KID)
		settle(t, p, 2)
		r := do(p, t.Context(), http.MethodPost, request(t, k.KID))
		wantError(t, r, http.StatusServiceUnavailable, "busy", k.KID)
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		p.Deliver(event(1, k))
		wantKeys(t, <-a, k)
		wantKeys(t, <-b, k)
	})
}

// TestProxyOrigins: only the web origins the operator listed get CORS
// headers naming them; a page of any other origin is refused before its
// request waits for anything, and a request without an Origin (a native
// player) is served without CORS headers.
func TestProxyOrigins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const player = "https://player.example"
		p := licproxy.New(licproxy.Config{AllowOrigins: []string{player}})
		k := randomKeys(1)[0]
		p.Deliver(event(1, k))
		for _, c := range []struct {
			origin string
			status int
			acao   string
		}{
			{player, http.StatusOK, player},
			{"https://restreamer.example", http.StatusForbidden, ""},
			{"null", http.StatusForbidden, ""},
			{"", http.StatusOK, ""},
		} {
			r := do(p, t.Context(), http.MethodPost, request(t, k.KID), from(c.origin, "127.0.0.1:1"))
			if r.status != c.status || r.header.Get("Access-Control-Allow-Origin") != c.acao {
				t.Errorf("origin %q: status %d, Allow-Origin %q; want %d, %q", c.origin, r.status, r.header.Get("Access-Control-Allow-Origin"), c.status, c.acao)
			}
		}
		if got := p.Stats().Outcomes; got["forbidden-origin"] != 2 || got["granted"] != 2 {
			t.Errorf("outcomes %v", got)
		}
	})
}

// TestProxyHost: a request whose Host is not the proxy's own name — a
// page that rebound its DNS name to the loopback address — is refused,
// even for a released key.
func TestProxyHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := licproxy.New(licproxy.Config{Hosts: []string{"127.0.0.1:8080", "localhost:8080"}})
		k := randomKeys(1)[0]
		p.Deliver(event(1, k))
		host := func(h string) func(*http.Request) { return func(r *http.Request) { r.Host = h } }
		for h, want := range map[string]int{
			"127.0.0.1:8080": http.StatusOK, "localhost:8080": http.StatusOK,
			"rebind.attacker.example:8080": http.StatusMisdirectedRequest, "127.0.0.1:8081": http.StatusMisdirectedRequest, "": http.StatusMisdirectedRequest,
		} {
			if r := do(p, t.Context(), http.MethodPost, request(t, k.KID), host(h)); r.status != want {
				t.Errorf("Host %q: status %d, want %d", h, r.status, want)
			}
		}
		if got := p.Stats().Outcomes["bad-host"]; got != 3 {
			t.Errorf("bad-host %d, want 3", got)
		}
	})
}

// TestProxyPerClientBound: another local process filling the waiting
// room gets only its own share; the player's request still waits and is
// answered at the release.
func TestProxyPerClientBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const player = "https://player.example"
		p := licproxy.New(licproxy.Config{AllowOrigins: []string{player}, MaxWaiters: 10, MaxWaitersPerClient: 4})
		k := randomKeys(1)[0]
		var flood []<-chan result
		for i := range 20 {
			flood = append(flood, askAs(t, p, t.Context(), from("", "127.0.0.1:"+strconv.Itoa(2000+i)), k.KID))
		}
		settle(t, p, 4)
		mine := askAs(t, p, t.Context(), from(player, "127.0.0.1:9999"), k.KID)
		settle(t, p, 5)
		p.Deliver(event(1, k))
		wantKeys(t, <-mine, k)
		busy := 0
		for _, ch := range flood {
			if r := <-ch; r.status == http.StatusServiceUnavailable {
				busy++
			}
		}
		if busy != 16 {
			t.Errorf("%d of the flood's 20 refused busy, want 16", busy)
		}
	})
}
