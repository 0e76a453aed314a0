package clearkey_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/seal"
)

// masterFixture serves the handler in memory: nothing here depends on a
// socket or on time.
type masterFixture struct {
	h      *clearkey.MasterHandler
	master []byte
	off    atomic.Bool // Master returns nil
}

func newMasterFixture(t *testing.T) *masterFixture {
	t.Helper()
	f := &masterFixture{master: bytes.Repeat([]byte{7}, seal.MasterKeyLen)}
	h, err := clearkey.NewMasterHandler(clearkey.MasterConfig{
		Tokens: map[string]string{"s3cret-token": "device-a", "other-token": "device-b"},
		Master: func() []byte {
			if f.off.Load() {
				return nil
			}
			return f.master
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

func (f *masterFixture) do(t *testing.T, method, auth, body string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, "http://origin.test/v1/streams/1/licence", strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestMasterHandlerGrants(t *testing.T) {
	f := newMasterFixture(t)
	kid, _ := clearkey.MasterKID(f.master)
	req, _ := clearkey.MarshalRequest([][16]byte{kid}, "")
	for _, c := range []struct{ auth, body string }{
		{"Bearer s3cret-token", ""},
		{"bearer other-token", string(req)},
	} {
		resp, body := f.do(t, http.MethodPost, c.auth, c.body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: status %d: %s", c.auth, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
		master, err := clearkey.ParseMasterLicence(body)
		if err != nil || !bytes.Equal(master, f.master) {
			t.Fatalf("licence %s: %v", body, err)
		}
	}
	if got := f.h.Stats()["granted"]; got != 2 {
		t.Errorf("granted %d", got)
	}
}

func TestMasterHandlerRefuses(t *testing.T) {
	f := newMasterFixture(t)
	other, _ := clearkey.MarshalRequest([][16]byte{id16(t, specKID1)}, "")
	for _, c := range []struct {
		name, method, auth, body string
		status                   int
	}{
		{"no token", http.MethodPost, "", "", http.StatusUnauthorized},
		{"wrong token", http.MethodPost, "Bearer s3cret-tokem", "", http.StatusUnauthorized},
		{"prefix of token", http.MethodPost, "Bearer s3cret", "", http.StatusUnauthorized},
		{"empty token", http.MethodPost, "Bearer ", "", http.StatusUnauthorized},
		{"basic auth", http.MethodPost, "Basic czNjcmV0LXRva2Vu", "", http.StatusUnauthorized},
		{"GET", http.MethodGet, "Bearer s3cret-token", "", http.StatusMethodNotAllowed},
		{"bad json", http.MethodPost, "Bearer s3cret-token", `{"kids":[`, http.StatusBadRequest},
		{"persistent", http.MethodPost, "Bearer s3cret-token", `{"kids":["` + specKID1 + `"],"type":"persistent-license"}`, http.StatusBadRequest},
		{"other kid", http.MethodPost, "Bearer s3cret-token", string(other), http.StatusNotFound},
		{"oversized", http.MethodPost, "Bearer s3cret-token", strings.Repeat(" ", clearkey.MaxBodySize+1), http.StatusRequestEntityTooLarge},
	} {
		resp, body := f.do(t, c.method, c.auth, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.status, body)
			continue
		}
		if _, err := clearkey.ParseMasterLicence(body); err == nil {
			t.Errorf("%s: a licence in a refusal", c.name)
		}
		if c.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	f.off.Store(true)
	if resp, _ := f.do(t, http.MethodPost, "Bearer s3cret-token", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no master key: status %d", resp.StatusCode)
	}
	want := map[string]uint64{"unauthorized": 5, "bad-method": 1, "bad-request": 1, "unsupported-type": 1, "unknown-kid": 1, "too-large": 1, "unavailable": 1}
	got := f.h.Stats()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Stats[%q] = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if got["granted"] != 0 {
		t.Errorf("granted %d", got["granted"])
	}
}

func TestNewMasterHandlerConfig(t *testing.T) {
	master := func() []byte { return nil }
	for name, cfg := range map[string]clearkey.MasterConfig{
		"no tokens":    {Master: master},
		"empty token":  {Tokens: map[string]string{"": "x"}, Master: master},
		"no master fn": {Tokens: map[string]string{"t": "x"}},
	} {
		if _, err := clearkey.NewMasterHandler(cfg); !errors.Is(err, clearkey.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMasterHandlerSubscriptionToken: a granted licence carries the
// subscription token issued for its viewer in its header; a refused one carries none;
// when no token can be issued the licence is still granted, without it.
func TestMasterHandlerSubscriptionToken(t *testing.T) {
	var fail atomic.Bool
	h, err := clearkey.NewMasterHandler(clearkey.MasterConfig{
		Tokens: map[string]string{"s3cret-token": "device-a"},
		Master: func() []byte { return bytes.Repeat([]byte{7}, seal.MasterKeyLen) },
		SubscriptionToken: func(viewer string) ([]byte, error) {
			if fail.Load() {
				return nil, errors.New("clock unsynchronized")
			}
			if viewer != "device-a" {
				return nil, fmt.Errorf("token asked for viewer %q, not the token's name device-a", viewer)
			}
			return []byte{1, 2, 3}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &masterFixture{h: h}
	for _, c := range []struct {
		auth   string
		fail   bool
		status int
		header string
	}{
		{"Bearer s3cret-token", false, http.StatusOK, "AQID"},
		{"Bearer wrong", false, http.StatusUnauthorized, ""},
		{"Bearer s3cret-token", true, http.StatusOK, ""},
	} {
		fail.Store(c.fail)
		resp, body := f.do(t, http.MethodPost, c.auth, "")
		if resp.StatusCode != c.status || resp.Header.Get(clearkey.SubscriptionTokenHeader) != c.header {
			t.Errorf("%q (token fails %v): status %d, token %q; want %d, %q (%s)", c.auth, c.fail, resp.StatusCode,
				resp.Header.Get(clearkey.SubscriptionTokenHeader), c.status, c.header, body)
		}
	}
}
