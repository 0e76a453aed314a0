package session

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/internal/fetch"
)

// maxBody bounds a session description or licence response.
const maxBody = 1 << 20

// Session is what a receiver needs to configure itself from one URL: the
// origin key to trust, the streams, where edges release them, and where
// the master-key licence is. The origin serves this type at /v1/session.
type Session struct {
	OriginKey string   `json:"originKey"` // Ed25519 public key, base64
	KeyID     string   `json:"keyId"`     // its PROTOCOL.md §6.1 key id, hex
	Streams   []uint32 `json:"streams"`
	Groups    []string `json:"groups,omitempty"` // multicast groups, in udp.ParseGroup syntax
	Edges     []string `json:"edges,omitempty"`  // unicast edges, host:port
	// Licence is the master-key licence URL, with "{stream}" standing for
	// the stream id.
	Licence string `json:"licence,omitempty"`
	// LeadMs is the event's announce lead in milliseconds, the shortest of
	// its streams': how long before a period's release the origin issues
	// it. Edges bound their requests to an origin replica by it. 0: not
	// said (an older origin).
	LeadMs int64 `json:"leadMs,omitempty"`
}

// Lead is LeadMs as a duration.
func (s *Session) Lead() time.Duration { return time.Duration(s.LeadMs) * time.Millisecond }

// Fetch reads an origin's session description and checks that its origin
// key is an Ed25519 public key.
func Fetch(ctx context.Context, c *http.Client, url string) (*Session, error) {
	body, err := fetch.Do(ctx, c, http.MethodGet, url, "", maxBody)
	if err != nil {
		return nil, err
	}
	return parse(body, url)
}

// Path is where an origin serves its session description.
const Path = "/v1/session"

// FetchFrom is Fetch of path from whichever of the origin's replicas
// answers: path is Path for replicas given by base URL, "" for replicas
// given by session URL.
func FetchFrom(ctx context.Context, c *http.Client, o *fetch.Origins, path string) (*Session, error) {
	body, _, err := o.Do(ctx, c, http.MethodGet, path, "", maxBody)
	if err != nil {
		return nil, err
	}
	return parse(body, o.Current()+path)
}

// LicenceReplicas are where to ask for the stream's licence, given the
// session URLs of the origin's replicas and the one whose description s
// is: a licence URL on that replica's host is asked of every replica, at
// the same path, that one first; one elsewhere (a licence service) is
// asked alone.
func (s *Session) LicenceReplicas(stream uint32, sessionURLs []string, from string) (o *fetch.Origins, path string) {
	lic := s.LicenceURL(stream)
	lu, err1 := url.Parse(lic)
	fu, err2 := url.Parse(from)
	if err1 != nil || err2 != nil || lu.Scheme != fu.Scheme || lu.Host != fu.Host || len(sessionURLs) < 2 {
		return fetch.NewOrigins(lic), ""
	}
	var bases []string
	first := 0
	for _, su := range sessionURLs {
		if u, err := url.Parse(su); err == nil {
			if u.Scheme == fu.Scheme && u.Host == fu.Host {
				first = len(bases)
			}
			bases = append(bases, u.Scheme+"://"+u.Host)
		}
	}
	// Start with the replica that just answered: those before it in the
	// list had failed, and would each cost the first licence a timeout.
	bases = append(bases[first:], bases[:first]...)
	return fetch.NewOrigins(bases...), lu.RequestURI()
}

func parse(body []byte, url string) (*Session, error) {
	var s Session
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("session %s: %w", url, err)
	}
	if _, err := s.PublicKey(); err != nil {
		return nil, err
	}
	return &s, nil
}

// PublicKey decodes the origin key the session names.
func (s *Session) PublicKey() (ed25519.PublicKey, error) {
	k, err := base64.StdEncoding.DecodeString(s.OriginKey)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("session: origin key is not an Ed25519 public key")
	}
	return ed25519.PublicKey(k), nil
}

// LicenceURL is the stream's master-key licence address.
func (s *Session) LicenceURL(stream uint32) string {
	return strings.ReplaceAll(s.Licence, "{stream}", strconv.FormatUint(uint64(stream), 10))
}

// FetchMaster gets the stream's master key with a bearer token from its
// licence URL, and checks the licence (clearkey.ParseMasterLicence).
func FetchMaster(ctx context.Context, c *http.Client, url, token string) ([]byte, error) {
	master, _, err := FetchLicence(ctx, c, url, token)
	return master, err
}

// FetchLicence is FetchMaster, also returning the subscription token the
// licence carries (clearkey.SubscriptionTokenHeader), or nil without one.
// The token is not checked here: edges check it.
func FetchLicence(ctx context.Context, c *http.Client, url, token string) (master, subscription []byte, err error) {
	body, h, err := fetch.DoHeader(ctx, c, http.MethodPost, url, token, maxBody)
	if err != nil {
		return nil, nil, err
	}
	return parseLicence(body, h)
}

// FetchLicenceFrom is FetchLicence of path from whichever replica
// answers (LicenceReplicas).
func FetchLicenceFrom(ctx context.Context, c *http.Client, o *fetch.Origins, path, token string) (master, subscription []byte, err error) {
	body, h, err := o.Do(ctx, c, http.MethodPost, path, token, maxBody)
	if err != nil {
		return nil, nil, err
	}
	return parseLicence(body, h)
}

func parseLicence(body []byte, h http.Header) (master, subscription []byte, err error) {
	if master, err = clearkey.ParseMasterLicence(body); err != nil {
		return nil, nil, err
	}
	if v := h.Get(clearkey.SubscriptionTokenHeader); v != "" {
		if subscription, err = base64.StdEncoding.DecodeString(v); err != nil {
			return nil, nil, fmt.Errorf("licence: %s: %w", clearkey.SubscriptionTokenHeader, err)
		}
	}
	return master, subscription, nil
}
