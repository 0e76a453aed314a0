package session_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/seal"
)

func client(h http.HandlerFunc) *http.Client { return memhttp.Client(h) }

var originKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))

func TestFetch(t *testing.T) {
	for _, c := range []struct {
		name, body string
		status     int
		want       string // error substring; empty: success
	}{
		{"good", `{"originKey":"` + originKey + `","streams":[4],"licence":"https://o/v1/streams/{stream}/licence"}`, 200, ""},
		{"short key", `{"originKey":"AAAA","streams":[4]}`, 200, "not an Ed25519 public key"},
		{"not json", `<html>`, 200, "invalid character"},
		{"refused", "no such thing\nat all", 404, "404 Not Found: no such thing"},
		{"too large", `{"x":"` + strings.Repeat("x", 1<<20) + `"}`, 200, "over 1048576 bytes"},
	} {
		s, err := session.Fetch(t.Context(), client(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.Header.Get("Authorization") != "" {
				t.Errorf("%s: %s with %q", c.name, r.Method, r.Header.Get("Authorization"))
			}
			w.WriteHeader(c.status)
			w.Write([]byte(c.body))
		}), "https://o/v1/session")
		if c.want != "" {
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := s.LicenceURL(4); got != "https://o/v1/streams/4/licence" {
			t.Errorf("licence URL %q", got)
		}
	}
}

func TestFetchMaster(t *testing.T) {
	master := bytes.Repeat([]byte{9}, 32)
	lic, err := clearkey.MarshalMasterLicence(master)
	if err != nil {
		t.Fatal(err)
	}
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write(lic)
	}
	got, err := session.FetchMaster(t.Context(), client(h), "https://o/v1/streams/4/licence", "tok")
	if err != nil || !bytes.Equal(got, master) {
		t.Fatalf("master %x, %v", got, err)
	}
	if _, err := session.FetchMaster(t.Context(), client(h), "https://o/v1/streams/4/licence", "guess"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
	// A content-key licence is not taken for a master key.
	content, err := clearkey.MarshalLicence([]seal.ContentKey{{KID: [16]byte{1}, Key: [16]byte{2}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = session.FetchMaster(t.Context(), client(func(w http.ResponseWriter, r *http.Request) { w.Write(content) }), "https://o/l", "tok")
	if !errors.Is(err, clearkey.ErrKey) {
		t.Errorf("a content-key licence: %v, want ErrKey", err)
	}
}

// TestReplicas: a receiver given two replicas' session URLs, the first
// down, is configured by the second, and its licence, on the answering
// replica's host, is asked of each replica in turn at the same path; a
// licence hosted elsewhere is asked alone.
func TestReplicas(t *testing.T) {
	var asked []string
	c := client(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.Host+r.URL.Path)
		switch {
		case r.Host == "a.test":
			http.Error(w, "replica down", http.StatusBadGateway)
		case r.URL.Path == "/v1/session":
			w.Write([]byte(`{"originKey":"` + originKey + `","streams":[4],"licence":"https://b.test/v1/streams/{stream}/licence"}`))
		default:
			w.Header().Set(clearkey.SubscriptionTokenHeader, base64.StdEncoding.EncodeToString([]byte("sub")))
			body, _ := clearkey.MarshalMasterLicence(bytes.Repeat([]byte{7}, seal.MasterKeyLen))
			w.Write(body)
		}
	})
	urls := []string{"https://a.test/v1/session", "https://b.test/v1/session"}
	sessions := fetch.NewOrigins(urls...)
	s, err := session.FetchFrom(t.Context(), c, sessions, "")
	if err != nil || sessions.Current() != urls[1] {
		t.Fatalf("session from replicas: %v, using %s", err, sessions.Current())
	}
	lic, path := s.LicenceReplicas(4, urls, sessions.Current())
	if path != "/v1/streams/4/licence" || lic.Current() != "https://b.test" {
		t.Fatalf("licence replicas start at %s, path %q", lic.Current(), path)
	}
	master, sub, err := session.FetchLicenceFrom(t.Context(), c, lic, path, "tok")
	if err != nil || len(master) != seal.MasterKeyLen || string(sub) != "sub" {
		t.Fatalf("licence: %v", err)
	}
	want := []string{"GET a.test/v1/session", "GET b.test/v1/session", "POST b.test/v1/streams/4/licence"}
	if !slices.Equal(asked, want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
	s.Licence = "https://licences.example/x/{stream}"
	if lic, path := s.LicenceReplicas(4, urls, urls[1]); lic.Current() != "https://licences.example/x/4" || path != "" {
		t.Errorf("a licence service elsewhere: %s %q", lic.Current(), path)
	}
}
