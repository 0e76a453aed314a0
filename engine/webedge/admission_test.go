package webedge

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// tokenAt is the edge's time in the token tests (TAI ns).
const tokenAt = int64(1_900_000_000) * int64(time.Second)

// tokenEdge is a Server requiring tokens of a fresh origin key, and that
// key.
func tokenEdge(t *testing.T) (Config, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Streams: []uint32{1}, Clock: clockAt(tokenAt), Tokens: seal.NewKeyRing(pub)}, priv
}

// withToken is url with tok in its query, as the web library adds it.
func withToken(u string, tok []byte) string {
	return u + "?" + url.Values{TokenParam: {base64.StdEncoding.EncodeToString(tok)}}.Encode()
}

// With tokens required, a request without a valid one is answered 403
// before any upgrade and counted, on either transport (both go through
// admit).
func TestTokenRefused(t *testing.T) {
	cfg, origin := tokenEdge(t)
	_, other, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	valid := int64(5 * time.Minute)
	short := seal.SignToken(origin, &wire.Token{NotAfter: tokenAt + valid})
	refused := map[string]string{
		"none":              "/",
		"empty":             "/?token=",
		"not base64":        "/?token=%%%",
		"short":             withToken("/", short[:wire.TokenLen-1]),
		"expired":           withToken("/", seal.SignToken(origin, &wire.Token{NotAfter: tokenAt - 1})),
		"too long-lived":    withToken("/", seal.SignToken(origin, &wire.Token{NotAfter: tokenAt + int64(2*time.Hour)})),
		"another origin's":  withToken("/", seal.SignToken(other, &wire.Token{NotAfter: tokenAt + valid})),
		"tampered viewer":   withToken("/", func() []byte { b := append([]byte(nil), short...); b[16] ^= 1; return b }()),
		"token in a header": "/",
	}
	for name, target := range refused {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if name == "token in a header" {
			r.Header.Set("Embargo-Subscription-Token", base64.StdEncoding.EncodeToString(short))
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, w.Code)
		}
	}
	if st := s.Stats(); st.Refused != uint64(len(refused)) || st.BadToken != uint64(len(refused)) || st.Accepted != 0 {
		t.Errorf("Refused %d, BadToken %d, Accepted %d; want %d, %d, 0", st.Refused, st.BadToken, st.Accepted, len(refused), len(refused))
	}
	// A genuine token passes admission (the recorder then cannot be
	// upgraded: refused, but not for its token).
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, withToken("/", short), nil))
	if st := s.Stats(); w.Code == http.StatusForbidden || st.BadToken != uint64(len(refused)) {
		t.Errorf("genuine token: %d, BadToken %d", w.Code, st.BadToken)
	}
}

// A browser with a genuine token gets its session over WebSocket and
// WebTransport; one without is refused 403 on both.
func TestTokenSessions(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	cfg, origin := tokenEdge(t)
	s, wsURL := start(t, cfg)
	wtURL, tr := startWT(t, s)
	tok := seal.SignToken(origin, &wire.Token{NotAfter: tokenAt + int64(time.Minute)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, rsp, err := websocket.Dial(ctx, wsURL, nil); err == nil || rsp == nil || rsp.StatusCode != http.StatusForbidden {
		t.Fatalf("WebSocket without a token: %v, want 403", err)
	}
	if rsp, _, err := tr.Dial(ctx, wtURL, nil); err == nil || rsp == nil || rsp.StatusCode != http.StatusForbidden {
		t.Fatalf("WebTransport without a token: %v, want 403", err)
	}
	c, _, err := websocket.Dial(ctx, withToken(wsURL, tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, sess, err := tr.Dial(ctx, withToken(wtURL, tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	waitConns(t, s, 2)
	if st := s.Stats(); st.Accepted != 2 || st.BadToken != 2 {
		t.Errorf("Accepted %d, BadToken %d; want 2, 2", st.Accepted, st.BadToken)
	}
}

// TestSessionsPerViewer: with tokens required, the sessions whose tokens
// name one viewer are bounded, over both transports together: a token
// copied from a page opens no more; another viewer's still does, and a
// session that ends makes room.
func TestSessionsPerViewer(t *testing.T) {
	realtime.Exclusive(t) // real loopback sockets
	cfg, origin := tokenEdge(t)
	cfg.MaxPerViewer = 2
	s, wsURL := start(t, cfg)
	wtURL, tr := startWT(t, s)
	token := func(viewer byte) []byte {
		return seal.SignToken(origin, &wire.Token{NotAfter: tokenAt + int64(time.Minute), Viewer: [8]byte{viewer}})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	a, _, err := websocket.Dial(ctx, withToken(wsURL, token(1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	openWT(ctx, t, tr, withToken(wtURL, token(1)))
	waitConns(t, s, 2)
	_, rsp, err := websocket.Dial(ctx, withToken(wsURL, token(1)), nil)
	if err == nil || rsp == nil || rsp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third session for one viewer: %v, want 429", err)
	}
	if rsp, _, err := tr.Dial(ctx, withToken(wtURL, token(1)), nil); err == nil || rsp == nil || rsp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third session for one viewer over WebTransport: %v, want 429", err)
	}
	b, _, err := websocket.Dial(ctx, withToken(wsURL, token(2)), nil)
	if err != nil {
		t.Fatalf("another viewer: %v", err)
	}
	defer b.CloseNow()
	waitConns(t, s, 3)
	if st := s.Stats(); st.RefusedViewer != 2 || st.RefusedAddress != 0 {
		t.Errorf("stats %+v, want 2 refused for their viewer", st)
	}
	a.Close(websocket.StatusNormalClosure, "")
	waitConns(t, s, 2)
	c, _, err := websocket.Dial(ctx, withToken(wsURL, token(1)), nil)
	if err != nil {
		t.Fatalf("after one of the viewer's sessions ended: %v", err)
	}
	c.CloseNow()
}
