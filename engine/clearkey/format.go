package clearkey

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var (
	// ErrMalformed: the body is not the JSON message expected.
	ErrMalformed = errors.New("clearkey: malformed message")
	// ErrKID: a key id that is not base64url (no padding) of 16 bytes.
	ErrKID = errors.New("clearkey: bad key id")
	// ErrKey: a key value, or key type, embargo cannot use.
	ErrKey = errors.New("clearkey: bad key")
	// ErrTooMany: more than MaxKIDs key ids or keys in one message.
	ErrTooMany = errors.New("clearkey: too many keys")
	// ErrTooLarge: a body over MaxBodySize.
	ErrTooLarge = errors.New("clearkey: body too large")
	// ErrUnsupported: a session type embargo does not serve. Keys are
	// released for live viewing only; a persistent licence would outlive
	// the embargo's purpose and cannot be revoked.
	ErrUnsupported = errors.New("clearkey: unsupported session type")
	// ErrConfig is wrapped by the reasons a handler refuses its config.
	ErrConfig = errors.New("clearkey: invalid config")
)

// Bounds on what one message may hold. A player asks for the keys of the
// tracks it plays (a handful); the bounds only stop abuse.
const (
	MaxBodySize = 64 << 10
	MaxKIDs     = 64
)

// MediaKeySessionType values a Clear Key message may name.
const (
	TypeTemporary         = "temporary"
	TypePersistentLicense = "persistent-license"
	// typeUsageRecord was in EME drafts; browsers may still send it.
	typeUsageRecord = "persistent-usage-record"
)

// b64 is base64url without padding, as EME requires. Strict so that each
// value has exactly one accepted spelling and re-encodes to itself.
var b64 = base64.RawURLEncoding.Strict()

// Request is a Clear Key licence request.
type Request struct {
	KIDs [][wire.KIDLen]byte
	// Type is TypeTemporary: the only type ParseRequest accepts.
	Type string
}

// request and jwkSet fix the members' order on output to the order of the
// specification's examples.
type request struct {
	KIDs []string `json:"kids"`
	Type string   `json:"type"`
}

type jwk struct {
	Kty string `json:"kty"`
	K   string `json:"k"`
	KID string `json:"kid"`
}

type jwkSet struct {
	Keys []jwk  `json:"keys"`
	Type string `json:"type"`
}

// ParseRequest decodes a licence request (EME §9.1.3). It refuses
// persistent session types with ErrUnsupported; an absent "type" means
// TypeTemporary, the default EME gives the licence's own "type".
func ParseRequest(body []byte) (Request, error) {
	m, err := object(body)
	if err != nil {
		return Request{}, err
	}
	raw, ok := m["kids"]
	if !ok {
		return Request{}, fmt.Errorf("%w: no \"kids\"", ErrMalformed)
	}
	var kids []string
	if err := json.Unmarshal(raw, &kids); err != nil {
		return Request{}, fmt.Errorf("%w: kids: %v", ErrMalformed, err)
	}
	switch {
	case len(kids) == 0:
		return Request{}, fmt.Errorf("%w: no key ids", ErrMalformed)
	case len(kids) > MaxKIDs:
		return Request{}, fmt.Errorf("%w: %d key ids", ErrTooMany, len(kids))
	}
	req := Request{KIDs: make([][wire.KIDLen]byte, len(kids))}
	for i, s := range kids {
		if !decodeFixed(req.KIDs[i][:], s) {
			return Request{}, fmt.Errorf("%w: %q", ErrKID, s)
		}
	}
	if req.Type, err = sessionType(m); err != nil {
		return Request{}, err
	}
	return req, nil
}

// MarshalRequest encodes a licence request, for clients and tests. An
// empty typ means TypeTemporary.
func MarshalRequest(kids [][wire.KIDLen]byte, typ string) ([]byte, error) {
	typ, err := outputType(typ)
	if err != nil {
		return nil, err
	}
	if err := count(len(kids)); err != nil {
		return nil, err
	}
	r := request{KIDs: make([]string, len(kids)), Type: typ}
	for i := range kids {
		r.KIDs[i] = b64.EncodeToString(kids[i][:])
	}
	return json.Marshal(r)
}

// MarshalLicence encodes keys as a Clear Key licence (EME §9.1.4): a JWK
// Set of "oct" keys, members in the order of the specification's example.
// An empty typ means TypeTemporary.
func MarshalLicence(keys []seal.ContentKey, typ string) ([]byte, error) {
	set, err := newSet(len(keys), typ)
	if err != nil {
		return nil, err
	}
	for i := range keys {
		set.Keys[i] = jwk{Kty: "oct", K: b64.EncodeToString(keys[i].Key[:]), KID: b64.EncodeToString(keys[i].KID[:])}
	}
	return json.Marshal(set)
}

// ParseLicence decodes a Clear Key licence into its content keys, in
// order. Every key must be "oct" with a 16-byte key and key id.
func ParseLicence(body []byte) ([]seal.ContentKey, error) {
	set, err := parseSet(body)
	if err != nil {
		return nil, err
	}
	keys := make([]seal.ContentKey, len(set))
	for i, k := range set {
		if !decodeFixed(keys[i].KID[:], k.KID) {
			return nil, fmt.Errorf("%w: %q", ErrKID, k.KID)
		}
		if !decodeFixed(keys[i].Key[:], k.K) {
			return nil, fmt.Errorf("%w: key of %q", ErrKey, k.KID)
		}
	}
	return keys, nil
}

func newSet(n int, typ string) (jwkSet, error) {
	typ, err := outputType(typ)
	if err != nil {
		return jwkSet{}, err
	}
	if err := count(n); err != nil {
		return jwkSet{}, err
	}
	return jwkSet{Keys: make([]jwk, n), Type: typ}, nil
}

// parseSet decodes a JWK Set's keys, checking structure and key type but
// not the lengths, which depend on what the keys are for.
func parseSet(body []byte) ([]jwk, error) {
	m, err := object(body)
	if err != nil {
		return nil, err
	}
	if _, err := sessionType(m); err != nil {
		return nil, err
	}
	raw, ok := m["keys"]
	if !ok {
		return nil, fmt.Errorf("%w: no \"keys\"", ErrMalformed)
	}
	var objs []json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, fmt.Errorf("%w: keys: %v", ErrMalformed, err)
	}
	if err := count(len(objs)); err != nil {
		return nil, err
	}
	set := make([]jwk, len(objs))
	for i, o := range objs {
		km, err := object(o)
		if err != nil {
			return nil, err
		}
		if set[i].Kty, err = member(km, "kty"); err != nil {
			return nil, err
		}
		if set[i].K, err = member(km, "k"); err != nil {
			return nil, err
		}
		if set[i].KID, err = member(km, "kid"); err != nil {
			return nil, err
		}
		if set[i].Kty != "oct" {
			return nil, fmt.Errorf("%w: key type %q", ErrKey, set[i].Kty)
		}
	}
	return set, nil
}

// object decodes a JSON object by exact member names: encoding/json
// would otherwise match "KIDS" to "kids", which no other implementation
// does.
func object(body []byte) (map[string]json.RawMessage, error) {
	if len(body) > MaxBodySize {
		return nil, ErrTooLarge
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not an object", ErrMalformed)
	}
	return m, nil
}

// member is a required string member.
func member(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", fmt.Errorf("%w: no %q", ErrMalformed, name)
	}
	return str(raw, name)
}

func str(raw json.RawMessage, name string) (string, error) {
	var s string
	// A null would decode to "" without error; refuse it as not a string.
	if bytes.Equal(raw, []byte("null")) {
		return "", fmt.Errorf("%w: %s is null", ErrMalformed, name)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
	}
	return s, nil
}

// sessionType is m's "type", TypeTemporary when absent.
func sessionType(m map[string]json.RawMessage) (string, error) {
	raw, ok := m["type"]
	if !ok {
		return TypeTemporary, nil
	}
	s, err := str(raw, "type")
	if err != nil {
		return "", err
	}
	switch s {
	case TypeTemporary:
		return s, nil
	case TypePersistentLicense, typeUsageRecord:
		return "", fmt.Errorf("%w: %q", ErrUnsupported, s)
	}
	return "", fmt.Errorf("%w: session type %q", ErrMalformed, s)
}

// outputType is the type a marshalled message names. Only temporary
// sessions are produced, so that what embargo writes it also accepts.
func outputType(typ string) (string, error) {
	switch typ {
	case "", TypeTemporary:
		return TypeTemporary, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnsupported, typ)
}

func count(n int) error {
	switch {
	case n == 0:
		return fmt.Errorf("%w: no keys", ErrMalformed)
	case n > MaxKIDs:
		return fmt.Errorf("%w: %d", ErrTooMany, n)
	}
	return nil
}

// decodeFixed decodes s into all of dst. The length check first also
// rejects the CR and LF that the base64 package would silently skip.
func decodeFixed(dst []byte, s string) bool {
	if len(s) != b64.EncodedLen(len(dst)) {
		return false
	}
	n, err := b64.Decode(dst, []byte(s))
	return err == nil && n == len(dst)
}
