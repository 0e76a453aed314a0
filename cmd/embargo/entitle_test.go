package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/embargo-live/embargo/internal/realtime"
)

// TestOriginViewerEntitlement: an origin given the viewer service's JWK
// Set serves the master key to a viewer whose JWT entitles them to the
// stream — recv receives every period with it — and refuses one whose
// token does not, with the reason.
func TestOriginViewerEntitlement(t *testing.T) {
	realtime.Exclusive(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "v1", Algorithm: "ES256", Use: "sig"}}})
	if err := os.WriteFile(jwks, set, 0o644); err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	token := func(sub string, streams ...uint32) string {
		raw, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://id.test", Subject: sub, Audience: jwt.Audience{"embargo"},
			Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Claims(map[string]any{"embargo_streams": streams}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, sub)
		if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := startOrigin(t, ctx, "-period", "300ms", "-lead", "1s", "-present", "300ms", "-jwks", jwks, "-jwt-issuer", "https://id.test")
	edgeOut, edgeDone, stopEdge := lab.edge(t, ctx)
	defer func() { stopEdge(); <-edgeDone }()
	recv := func(tokenFile string) (int, string) {
		var out, errb bytes.Buffer
		code := run(ctx, []string{"recv", "-session", "https://" + lab.addr(0) + "/v1/session", "-token-file", tokenFile,
			"-ca", filepath.Join(lab.certs, "ca.pem"), "-periods", "2", "-catch-up", "0"}, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := recv(token("viewer-1", 1)); code != 0 || strings.Count(out, "stream 1 period") != 2 {
		t.Fatalf("entitled viewer: exit %d:\n%s\nedge: %s\norigin: %s", code, out, edgeOut.String(), lab.out.String())
	}
	if code, out := recv(token("viewer-2", 2)); code == 0 || !strings.Contains(out, "403") || !strings.Contains(out, "not-entitled") {
		t.Fatalf("viewer without stream 1: exit %d:\n%s", code, out)
	}
	// A mistake in the entitlement flags is refused before any state is
	// created or port listened on.
	var out bytes.Buffer
	state := filepath.Join(dir, "state")
	if code := run(ctx, []string{"origin", "-jwks", jwks, "-state", state, "-listen", lab.addr(0)}, &out, &out); code != 2 || !strings.Contains(out.String(), "-jwks needs -jwt-issuer") {
		t.Fatalf("-jwks without an issuer: exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state created before the flags were checked: %v", err)
	}
}
