package keyserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/internal/fetch"
)

// Viewers decides who may fetch a stream's master key from the credential
// the service already gives each viewer: a JWT (RFC 7519) signed by the
// service, verified against the service's published keys (a JWK Set, RFC
// 7517), with go-jose. A token is accepted when
//
//   - its signature verifies (ES256, ES384, RS256, PS256 or EdDSA) under
//     the key of its "kid" in the set;
//   - "iss" is Issuer and "aud" names Audience;
//   - it has "exp" and "sub", and "exp", "nbf" and "iat" hold at the
//     origin's clock within Leeway;
//   - its entitlement claim (Claim, default "embargo_streams", a JSON array
//     of stream ids) names the stream.
//
// Each check that fails is its own refusal (clearkey.BadToken, Expired,
// WrongIssuer, WrongAudience, NotEntitled), counted and answered 401 or
// 403. Nothing is kept per viewer: any origin replica answers any viewer,
// and revoking a viewer is not renewing their token (its expiry), which
// touches no one else.
type Viewers struct {
	Keys     KeySet
	Issuer   string
	Audience string
	// Claim names the entitlement claim; "" means DefaultClaim.
	Claim string
	// Leeway is the clock skew allowed on exp, nbf and iat; 0 means
	// DefaultLeeway.
	Leeway time.Duration
	// Now is the origin's clock; nil means time.Now.
	Now func() time.Time
}

// DefaultClaim is the entitlement claim's name, DefaultLeeway the skew
// allowed on a token's times.
const (
	DefaultClaim  = "embargo_streams"
	DefaultLeeway = 30 * time.Second
)

// algorithms are the signature algorithms a viewer token may use; "none"
// and HMAC (a shared secret the origin would have to hold) are not among
// them.
var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

// Authorize checks the bearer JWT of r for stream and returns its subject.
func (v *Viewers) Authorize(r *http.Request, stream uint32) (string, clearkey.Outcome, bool) {
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	raw = strings.TrimSpace(raw)
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return "", clearkey.Unauthorized, false
	}
	tok, err := jwt.ParseSigned(raw, algorithms)
	if err != nil || len(tok.Headers) != 1 {
		return "", clearkey.BadToken, false
	}
	keys, err := v.Keys.Keys(r.Context(), tok.Headers[0].KeyID)
	if err != nil {
		return "", clearkey.BadToken, false
	}
	var claims jwt.Claims
	var ent map[string]any
	if err := tok.Claims(keys, &claims, &ent); err != nil {
		return "", clearkey.BadToken, false
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	if claims.Expiry == nil || claims.Subject == "" {
		return "", clearkey.BadToken, false
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: v.Issuer, AnyAudience: jwt.Audience{v.Audience}, Time: now()}, leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return claims.Subject, clearkey.WrongIssuer, false
	case errors.Is(err, jwt.ErrInvalidAudience):
		return claims.Subject, clearkey.WrongAudience, false
	case errors.Is(err, jwt.ErrExpired), errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return claims.Subject, clearkey.Expired, false
	case err != nil:
		return claims.Subject, clearkey.BadToken, false
	}
	name := v.Claim
	if name == "" {
		name = DefaultClaim
	}
	if !entitled(ent[name], stream) {
		return claims.Subject, clearkey.NotEntitled, false
	}
	return claims.Subject, clearkey.Granted, true
}

// entitled reports whether an entitlement claim (a JSON array of numbers)
// names stream.
func entitled(claim any, stream uint32) bool {
	list, ok := claim.([]any)
	return ok && slices.ContainsFunc(list, func(x any) bool {
		f, ok := x.(float64)
		return ok && f == float64(stream)
	})
}

// A KeySet gives the keys a token's "kid" may name.
type KeySet interface {
	Keys(ctx context.Context, kid string) (*jose.JSONWebKeySet, error)
}

// StaticKeys is a JWK Set read once, from a file the operator provisions.
type StaticKeys struct{ Set jose.JSONWebKeySet }

// Keys returns the set.
func (s *StaticKeys) Keys(context.Context, string) (*jose.JSONWebKeySet, error) { return &s.Set, nil }

// ReadKeys reads a JWK Set file, refusing one with no public signing key
// or with a private key in it (a JWKS is published, never secret).
func ReadKeys(path string) (*StaticKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	set, err := ParseKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &StaticKeys{Set: set}, nil
}

// ParseKeySet reads a JWK Set (RFC 7517 §5) of public keys.
func ParseKeySet(data []byte) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return set, fmt.Errorf("not a JWK Set: %w", err)
	}
	if len(set.Keys) == 0 {
		return set, errors.New("a JWK Set with no keys")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return set, fmt.Errorf("key %q is private: publish only public keys", k.KeyID)
		}
	}
	return set, nil
}

// RemoteKeys is the service's published JWK Set at a URL, fetched when
// first needed, again every Refresh (default 5 minutes), and at once — at
// most every 30 s — when a token names a key id the cached set lacks (the
// service rotated its keys). A failed fetch keeps the cached set.
type RemoteKeys struct {
	URL     string
	Client  *http.Client
	Refresh time.Duration
	Now     func() time.Time

	mu      sync.Mutex
	set     *jose.JSONWebKeySet
	fetched time.Time
	tried   time.Time
}

// remoteMinInterval bounds fetches a stream of unknown key ids can cause.
const remoteMinInterval = 30 * time.Second

// Keys returns the cached set, refreshed as the type describes. The fetch
// runs outside the lock: while one request fetches, the others answer
// from the cached set (or, before the first fetch has answered, fail).
func (k *RemoteKeys) Keys(ctx context.Context, kid string) (*jose.JSONWebKeySet, error) {
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	refresh := k.Refresh
	if refresh == 0 {
		refresh = 5 * time.Minute
	}
	t := now()
	k.mu.Lock()
	set := k.set
	stale := set == nil || t.Sub(k.fetched) >= refresh || len(set.Key(kid)) == 0
	fetch := stale && (k.tried.IsZero() || t.Sub(k.tried) >= remoteMinInterval || set == nil && t.Sub(k.tried) >= time.Second)
	if fetch {
		k.tried = t
	}
	k.mu.Unlock()
	if fetch {
		fresh, err := k.fetch(ctx)
		if err == nil {
			k.mu.Lock()
			k.set, k.fetched, set = fresh, t, fresh
			k.mu.Unlock()
		} else if set == nil {
			return nil, fmt.Errorf("viewer keys %s: %w", k.URL, err)
		}
	}
	if set == nil {
		return nil, fmt.Errorf("viewer keys %s: not fetched yet", k.URL)
	}
	return set, nil
}

// fetch gets and parses the published set.
func (k *RemoteKeys) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	body, err := fetch.Do(ctx, k.Client, http.MethodGet, k.URL, "", 1<<20)
	if err != nil {
		return nil, err
	}
	set, err := ParseKeySet(body)
	if err != nil {
		return nil, err
	}
	return &set, nil
}
