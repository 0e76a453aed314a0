package keyserver

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/embargo-live/embargo/engine/clearkey"
)

// maxSession bounds a session description or licence response.
const maxSession = 1 << 20

// FetchSession reads an origin's session description.
func FetchSession(ctx context.Context, c *http.Client, url string) (*Session, error) {
	body, err := fetch(ctx, c, http.MethodGet, url, "", maxSession)
	if err != nil {
		return nil, err
	}
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

// FetchMaster gets the stream's master key with a bearer token.
func FetchMaster(ctx context.Context, c *http.Client, url, token string) ([]byte, error) {
	body, err := fetch(ctx, c, http.MethodPost, url, token, maxSession)
	if err != nil {
		return nil, err
	}
	return clearkey.ParseMasterLicence(body)
}

// fetch makes one bodiless request and returns the body of a 200 (at most limit
// bytes), nil for a 204, and an error for anything else.
func fetch(ctx context.Context, c *http.Client, method, url, token string, limit int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, firstLine(out))
	case len(out) > limit:
		return nil, fmt.Errorf("%s %s: response over %d bytes", method, url, limit)
	}
	return out, nil
}
