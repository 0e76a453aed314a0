package clearkey

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// labelMasterKID separates the master key's id from every other hash of
// the master key.
const labelMasterKID = "embargo/v1 master kid"

// MasterKID is the fixed 16-byte id of an event's master key: the first
// 16 bytes of SHA-256("embargo/v1 master kid" ‖ master). A receiver can
// tell which event's key a licence holds without trusting the origin to
// label it, and the id reveals nothing about the key.
func MasterKID(master []byte) ([wire.KIDLen]byte, error) {
	var kid [wire.KIDLen]byte
	if len(master) != seal.MasterKeyLen {
		return kid, fmt.Errorf("%w: master key of %d bytes, want %d", ErrKey, len(master), seal.MasterKeyLen)
	}
	h := sha256.New()
	h.Write([]byte(labelMasterKID))
	h.Write(master)
	copy(kid[:], h.Sum(nil))
	return kid, nil
}

// MarshalMasterLicence encodes an event's master key as a one-key JWK Set
// in the shape of a Clear Key licence: {"kty":"oct","k":<32 bytes>,
// "kid":MasterKID}. It is embargo's own use of the format, for embargo
// receivers: no player could use a 32-byte key.
func MarshalMasterLicence(master []byte) ([]byte, error) {
	kid, err := MasterKID(master)
	if err != nil {
		return nil, err
	}
	return masterLicence(master, kid)
}

// masterLicence encodes a checked master key with its id.
func masterLicence(master []byte, kid [wire.KIDLen]byte) ([]byte, error) {
	set, err := newSet(1, TypeTemporary)
	if err != nil {
		return nil, err
	}
	set.Keys[0] = jwk{Kty: "oct", K: b64.EncodeToString(master), KID: b64.EncodeToString(kid[:])}
	return json.Marshal(set)
}

// ParseMasterLicence decodes a master-key licence and returns the master
// key. The licence must hold exactly one key whose id is MasterKID of it,
// so a content-key licence or a corrupted key is never taken for one.
func ParseMasterLicence(body []byte) ([]byte, error) {
	set, err := parseSet(body)
	if err != nil {
		return nil, err
	}
	if len(set) != 1 {
		return nil, fmt.Errorf("%w: %d keys in a master licence", ErrKey, len(set))
	}
	master := make([]byte, seal.MasterKeyLen)
	if !decodeFixed(master, set[0].K) {
		return nil, fmt.Errorf("%w: master key is not %d bytes of base64url", ErrKey, seal.MasterKeyLen)
	}
	var kid [wire.KIDLen]byte
	if !decodeFixed(kid[:], set[0].KID) {
		return nil, fmt.Errorf("%w: %q", ErrKID, set[0].KID)
	}
	if want, _ := MasterKID(master); kid != want {
		return nil, fmt.Errorf("%w: key id does not match the master key", ErrKID)
	}
	return master, nil
}

// MasterConfig configures a MasterHandler. Master, and Tokens or
// Authorize, are required.
type MasterConfig struct {
	// Tokens maps each accepted bearer token to the client's name, which
	// is only logged: one secret shared by many viewers, for labs.
	Tokens map[string]string
	// Authorize, when set, decides instead of Tokens: it returns the
	// viewer a request's credentials name, or the Outcome it is refused
	// with (Unauthorized, BadToken, Expired, WrongAudience, WrongIssuer:
	// 401; NotEntitled: 403).
	Authorize func(r *http.Request) (viewer string, refused Outcome, ok bool)
	// Master returns the event's master key, or nil while there is none
	// (answered 503). It is called once per authorised request.
	Master func() []byte
	// SubscriptionToken, when set, issues the subscription token (PROTOCOL.md
	// §4.10) each granted licence carries in its SubscriptionTokenHeader,
	// for the viewer the licence was granted to (Authorize's viewer, or the
	// name of the token that matched).
	SubscriptionToken func(viewer string) ([]byte, error)
	Logger            *slog.Logger
}

// SubscriptionTokenHeader carries, base64 (standard, padded), the
// subscription token issued with a master-key licence.
const SubscriptionTokenHeader = "Embargo-Subscription-Token"

// MasterHandler serves an event's master key to authorised receivers:
// POST with "Authorization: Bearer <token>" and either an empty body or a
// Clear Key licence request naming MasterKID. The answer is
// MarshalMasterLicence. It is safe for concurrent use.
type MasterHandler struct {
	tokens []token
	master func() []byte
	subTok func(viewer string) ([]byte, error)
	authz  func(*http.Request) (string, Outcome, bool)
	log    *slog.Logger
	counts Counters
}

type token struct {
	sum  [sha256.Size]byte
	name string
}

// NewMasterHandler checks cfg and returns a MasterHandler.
func NewMasterHandler(cfg MasterConfig) (*MasterHandler, error) {
	if len(cfg.Tokens) == 0 && cfg.Authorize == nil {
		return nil, fmt.Errorf("%w: no tokens and no Authorize", ErrConfig)
	}
	if cfg.Master == nil {
		return nil, fmt.Errorf("%w: no master key source", ErrConfig)
	}
	m := &MasterHandler{master: cfg.Master, subTok: cfg.SubscriptionToken, authz: cfg.Authorize, log: cfg.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for t, name := range cfg.Tokens {
		if t == "" {
			return nil, fmt.Errorf("%w: empty token for %q", ErrConfig, name)
		}
		m.tokens = append(m.tokens, token{sum: sha256.Sum256([]byte(t)), name: name})
	}
	return m, nil
}

// Stats returns the number of requests by outcome name (see Outcome).
func (m *MasterHandler) Stats() map[string]uint64 { return m.counts.Snapshot() }

// ServeHTTP implements http.Handler.
func (m *MasterHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		m.fail(w, http.StatusMethodNotAllowed, BadMethod, nil)
		return
	}
	client, refused, ok := "", Unauthorized, false
	if m.authz != nil {
		client, refused, ok = m.authz(r)
	} else {
		client, ok = m.authorize(r.Header.Get("Authorization"))
	}
	if !ok {
		// RFC 6750 §3: a credential that is missing or bad is 401 (with
		// error="invalid_token" when one was given); a good one without
		// this stream is 403, insufficient_scope.
		status, challenge := http.StatusUnauthorized, `Bearer realm="embargo"`
		switch refused {
		case NotEntitled:
			status, challenge = http.StatusForbidden, `Bearer realm="embargo", error="insufficient_scope"`
		case BadToken, Expired, WrongAudience, WrongIssuer:
			challenge = `Bearer realm="embargo", error="invalid_token", error_description="` + refused.String() + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		m.log.Debug("master licence refused", "remote", r.RemoteAddr, "reason", refused)
		m.fail(w, status, refused, nil)
		return
	}
	body, err := ReadBody(w, r)
	var req Request
	if err == nil && len(body) > 0 {
		req, err = ParseRequest(body)
	}
	if err != nil {
		o, status := Refusal(err)
		m.fail(w, status, o, nil)
		return
	}
	master := m.master()
	kid, err := MasterKID(master)
	if err != nil {
		m.log.Warn("no master key to serve", "client", client, "err", err)
		m.fail(w, http.StatusServiceUnavailable, Unavailable, nil)
		return
	}
	for _, k := range req.KIDs {
		if k != kid {
			m.fail(w, http.StatusNotFound, UnknownKID, [][wire.KIDLen]byte{k})
			return
		}
	}
	lic, err := masterLicence(master, kid)
	if err != nil {
		m.fail(w, http.StatusInternalServerError, Unavailable, nil)
		return
	}
	if m.subTok != nil {
		// Without a token the licence still serves its purpose; only
		// edges that require tokens will refuse this receiver for now.
		if tok, err := m.subTok(client); err != nil {
			m.log.Warn("licence granted without a subscription token", "client", client, "err", err)
		} else {
			w.Header().Set(SubscriptionTokenHeader, base64.StdEncoding.EncodeToString(tok))
		}
	}
	m.counts.Add(Granted)
	m.log.Info("master licence granted", "client", client, "remote", r.RemoteAddr)
	WriteJSON(w, http.StatusOK, lic)
}

func (m *MasterHandler) fail(w http.ResponseWriter, status int, o Outcome, kids [][wire.KIDLen]byte) {
	m.counts.Add(o)
	WriteError(w, status, o, kids)
}

// authorize returns the client a bearer token belongs to. Tokens are
// compared as SHA-256 sums, in constant time and against every entry, so
// neither a token's length nor how much of it matched shows in the timing.
func (m *MasterHandler) authorize(header string) (string, bool) {
	scheme, tok, _ := strings.Cut(header, " ")
	tok = strings.TrimLeft(tok, " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(tok))
	name, found := "", false
	for i := range m.tokens {
		if subtle.ConstantTimeCompare(sum[:], m.tokens[i].sum[:]) == 1 {
			name, found = m.tokens[i].name, true
		}
	}
	return name, found
}
