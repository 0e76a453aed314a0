// Package keyservertest is the test double beside the origin's viewer
// entitlement seam (keyserver.Viewers): a viewer service — the identity
// provider — that signs viewer JWTs with ES256 and publishes its JWK Set.
package keyservertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Service is a viewer service's signing key and published JWK Set.
type Service struct {
	Key  *ecdsa.PrivateKey
	KID  string
	JWKS jose.JSONWebKeySet
}

// NewService makes a service whose key has id kid.
func NewService(t testing.TB, kid string) *Service {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Service{Key: k, KID: kid, JWKS: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}}}}
}

// Token signs claims (registered and extra) as the service.
func (s *Service) Token(t testing.TB, c jwt.Claims, extra map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.Key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.KID))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(c).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
