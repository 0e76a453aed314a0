package keyserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keyserver/keyservertest"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/wire"
)

// service is the viewer service of these tests.
type service = keyservertest.Service

func newService(t testing.TB, kid string) *service { return keyservertest.NewService(t, kid) }

var now = time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)

// viewer is a valid token's claims: viewer-42, entitled to streams 1 and 3,
// for an hour.
func viewer() (jwt.Claims, map[string]any) {
	return jwt.Claims{Issuer: "https://id.example", Subject: "viewer-42", Audience: jwt.Audience{"embargo"},
			IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(time.Hour))},
		map[string]any{"embargo_streams": []uint32{1, 3}}
}

func verifier(s *service) *keyserver.Viewers {
	return &keyserver.Viewers{Keys: &keyserver.StaticKeys{Set: s.JWKS}, Issuer: "https://id.example", Audience: "embargo", Now: func() time.Time { return now }}
}

// TestViewersAuthorize: each check a viewer token must pass is its own
// refusal, and only a token passing all of them for this stream is
// granted, naming its viewer.
func TestViewersAuthorize(t *testing.T) {
	s, other := newService(t, "k1"), newService(t, "k1")
	v := verifier(s)
	mod := func(f func(*jwt.Claims, map[string]any)) string {
		c, x := viewer()
		f(&c, x)
		return s.Token(t, c, x)
	}
	c, x := viewer()
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	hsTok, _ := jwt.Signed(hs).Claims(c).Claims(x).Serialize()
	for _, tc := range []struct {
		name, header string
		stream       uint32
		want         clearkey.Outcome
	}{
		{"valid", "Bearer " + s.Token(t, c, x), 1, clearkey.Granted},
		{"valid, other entitled stream", "Bearer " + s.Token(t, c, x), 3, clearkey.Granted},
		{"not entitled", "Bearer " + s.Token(t, c, x), 2, clearkey.NotEntitled},
		{"no entitlement claim", "Bearer " + mod(func(_ *jwt.Claims, x map[string]any) { delete(x, "embargo_streams") }), 1, clearkey.NotEntitled},
		{"entitlement not a list", "Bearer " + mod(func(_ *jwt.Claims, x map[string]any) { x["embargo_streams"] = 1 }), 1, clearkey.NotEntitled},
		{"expired", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) }), 1, clearkey.Expired},
		{"within leeway", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.Expiry = jwt.NewNumericDate(now.Add(-10 * time.Second)) }), 1, clearkey.Granted},
		{"not yet valid", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }), 1, clearkey.Expired},
		{"no expiry", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.Expiry = nil }), 1, clearkey.BadToken},
		{"no subject", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.Subject = "" }), 1, clearkey.BadToken},
		{"wrong audience", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.Audience = jwt.Audience{"other-app"} }), 1, clearkey.WrongAudience},
		{"wrong issuer", "Bearer " + mod(func(c *jwt.Claims, _ map[string]any) { c.Issuer = "https://evil.example" }), 1, clearkey.WrongIssuer},
		{"signed by another key", "Bearer " + other.Token(t, c, x), 1, clearkey.BadToken},
		{"HMAC", "Bearer " + hsTok, 1, clearkey.BadToken},
		{"garbage", "Bearer not.a.jwt", 1, clearkey.BadToken},
		{"no token", "", 1, clearkey.Unauthorized},
		{"basic", "Basic dXNlcjpwYXNz", 1, clearkey.Unauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/streams/1/licence", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			who, got, ok := v.Authorize(r, tc.stream)
			if got != tc.want || ok != (tc.want == clearkey.Granted) {
				t.Fatalf("%v (ok %v), want %v", got, ok, tc.want)
			}
			if ok && who != "viewer-42" {
				t.Errorf("viewer %q", who)
			}
		})
	}
}

// TestLicenceByEntitlement: through the origin's handler, an entitled
// viewer gets the master key; one whose token expired gets 401 with the
// reason while another viewer is unaffected; one not entitled gets 403;
// the shared lab token no longer works; each refusal is counted.
func TestLicenceByEntitlement(t *testing.T) {
	s := newService(t, "k1")
	issuer := newIssuer(t, filepath.Join(t.TempDir(), "state"))
	h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer, Viewers: verifier(s), Tokens: map[string]string{"s3cret": "lab"}, Licence: "https://origin.test/v1/streams/{stream}/licence"})
	client := memhttp.Client(h)
	url := "https://origin.test/v1/streams/1/licence"
	c, x := viewer()
	m, err := session.FetchMaster(context.Background(), client, url, s.Token(t, c, x))
	if err != nil || string(m) != string(issuer.Event(1).Master) {
		t.Fatalf("entitled viewer: %v", err)
	}
	expired := c
	expired.Subject, expired.Expiry = "viewer-7", jwt.NewNumericDate(now.Add(-time.Hour))
	post := func(tok string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post(s.Token(t, expired, x)); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token", error_description="expired"`) {
		t.Fatalf("expired viewer: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if _, err := session.FetchMaster(context.Background(), client, url, s.Token(t, c, x)); err != nil {
		t.Fatalf("another viewer after one expired: %v", err)
	}
	x2 := map[string]any{"embargo_streams": []uint32{3}}
	if resp := post(s.Token(t, c, x2)); resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("viewer without stream 1: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := post("s3cret"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the shared lab token beside viewer tokens: %d", resp.StatusCode)
	}
	st := h.LicenceStats()
	for reason, want := range map[string]uint64{"granted": 2, "expired": 1, "not-entitled": 1, "bad-token": 1} {
		if st[reason] != want {
			t.Errorf("%s: %d, want %d (all: %v)", reason, st[reason], want, st)
		}
	}
}

// TestRemoteKeys: the published set is fetched once, kept, fetched again
// when a token names a key id it lacks (a rotation) — but not more than
// once in 30 s however many such tokens come — and a failed fetch keeps
// the cached set.
func TestRemoteKeys(t *testing.T) {
	a, b := newService(t, "old"), newService(t, "new")
	var serving atomic.Pointer[jose.JSONWebKeySet]
	serving.Store(&a.JWKS)
	var fetches atomic.Int32
	fail := atomic.Bool{}
	jwksServer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(serving.Load())
	})
	clock := now
	keys := &keyserver.RemoteKeys{URL: "https://id.example/jwks.json", Client: memhttp.Client(jwksServer), Now: func() time.Time { return clock }}
	v := &keyserver.Viewers{Keys: keys, Issuer: "https://id.example", Audience: "embargo", Now: func() time.Time { return clock }}
	c, x := viewer()
	try := func(s *service) clearkey.Outcome {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Authorization", "Bearer "+s.Token(t, c, x))
		_, o, _ := v.Authorize(r, 1)
		return o
	}
	for range 3 {
		if o := try(a); o != clearkey.Granted {
			t.Fatalf("old key: %v", o)
		}
	}
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches for three tokens of a known key", fetches.Load())
	}
	both := jose.JSONWebKeySet{Keys: append(append([]jose.JSONWebKey{}, a.JWKS.Keys...), b.JWKS.Keys...)}
	serving.Store(&both)
	clock = clock.Add(10 * time.Second)
	for range 5 {
		if o := try(b); o != clearkey.BadToken {
			t.Fatalf("new key within 30 s of the last fetch: %v", o)
		}
	}
	if fetches.Load() != 1 {
		t.Fatalf("%d fetches: unknown key ids within 30 s fetched again", fetches.Load())
	}
	clock = clock.Add(30 * time.Second)
	if o := try(b); o != clearkey.Granted || fetches.Load() != 2 {
		t.Fatalf("new key after 30 s: %v, %d fetches", o, fetches.Load())
	}
	fail.Store(true)
	clock = clock.Add(10 * time.Minute)
	if o := try(a); o != clearkey.Granted || fetches.Load() != 3 {
		t.Fatalf("a failed refresh dropped the cached set: %v, %d fetches", o, fetches.Load())
	}
	// A refresh that hangs holds up only the request that makes it: the
	// others answer from the cached set meanwhile.
	fail.Store(false)
	hang := make(chan struct{})
	hung := make(chan struct{})
	keys.Client = memhttp.Client(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(hung)
		<-hang
		jwksServer(w, r)
	}))
	clock = clock.Add(10 * time.Minute)
	first := make(chan clearkey.Outcome)
	go func() { first <- try(a) }()
	<-hung
	if o := try(b); o != clearkey.Granted {
		t.Fatalf("beside a hanging refresh: %v", o)
	}
	close(hang)
	if o := <-first; o != clearkey.Granted {
		t.Fatalf("the refreshing request: %v", o)
	}
}

// FuzzReadKeySet: no JWK Set file makes the reader panic.
func FuzzKeySet(f *testing.F) {
	s := newService(f, "k1")
	good, _ := json.Marshal(s.JWKS)
	f.Add(good)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := keyserver.ParseKeySet(data)
		if err == nil && len(ks.Keys) == 0 {
			t.Fatal("accepted a set with no keys")
		}
	})
}

// TestSubscriptionTokenBoundToViewer: the subscription token a licence
// carries names its viewer — ViewerID of the JWT's sub — the same in
// every licence of that viewer and another for another viewer; with the
// lab's shared tokens, the token's name.
func TestSubscriptionTokenBoundToViewer(t *testing.T) {
	s := newService(t, "k1")
	issuer := newIssuer(t, filepath.Join(t.TempDir(), "state"))
	url := "https://origin.test/v1/streams/1/licence"
	viewerOf := func(h http.Handler, bearer string) [8]byte {
		t.Helper()
		_, tok, err := session.FetchLicence(context.Background(), memhttp.Client(h), url, bearer)
		if err != nil {
			t.Fatal(err)
		}
		var wt wire.Token
		if err := wt.Decode(tok); err != nil {
			t.Fatalf("subscription token %x: %v", tok, err)
		}
		return wt.Viewer
	}
	h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer, Viewers: verifier(s)})
	c, x := viewer()
	first, again := viewerOf(h, s.Token(t, c, x)), viewerOf(h, s.Token(t, c, x))
	c.Subject = "viewer-7"
	other := viewerOf(h, s.Token(t, c, x))
	if first != keyserver.ViewerID("viewer-42") || again != first || other != keyserver.ViewerID("viewer-7") || other == first {
		t.Errorf("viewer ids: viewer-42 %x then %x, viewer-7 %x; want %x twice, then %x", first, again, other, keyserver.ViewerID("viewer-42"), keyserver.ViewerID("viewer-7"))
	}
	lab := keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer, Tokens: map[string]string{"s3cret": "set-top-box-9"}})
	if got := viewerOf(lab, "s3cret"); got != keyserver.ViewerID("set-top-box-9") {
		t.Errorf("lab token's viewer id %x, want ViewerID of its name", got)
	}
}
