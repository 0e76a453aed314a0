package keyserver_test

import (
	"encoding/hex"
	"path/filepath"
	"reflect"
	"testing"
	"testing/synctest"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/seal"
)

// TestSessionDescription: what the origin serves at /v1/session is what a
// device reads with package session: the signing key and its id, the
// streams in order, the configured groups, edges and licence URL, and the
// event's announce lead (the shortest of its streams').
func TestSessionDescription(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i := newIssuer(t, filepath.Join(t.TempDir(), "state"))
		h := keyserver.NewHandler(keyserver.ServerConfig{Issuer: i, Groups: []string{"239.1.2.3:7000"}, Edges: []string{"192.0.2.9:7171"},
			Licence: "https://origin.test/v1/streams/{stream}/licence"})
		s, err := session.Fetch(t.Context(), memhttp.Client(h), "https://origin.test/v1/session")
		if err != nil {
			t.Fatal(err)
		}
		pub, err := s.PublicKey()
		if err != nil || !pub.Equal(i.PublicKey()) {
			t.Fatalf("origin key %x, %v; want %x", pub, err, i.PublicKey())
		}
		id := seal.KeyID(i.PublicKey())
		want := session.Session{OriginKey: s.OriginKey, KeyID: hex.EncodeToString(id[:]), Streams: []uint32{1},
			Groups: []string{"239.1.2.3:7000"}, Edges: []string{"192.0.2.9:7171"}, Licence: "https://origin.test/v1/streams/{stream}/licence",
			LeadMs: i.Event(1).Schedule.Lead.Milliseconds()}
		if !reflect.DeepEqual(*s, want) || s.Lead() != i.Event(1).Schedule.Lead || s.LeadMs == 0 {
			t.Errorf("session %+v, want %+v", *s, want)
		}
		if got := s.LicenceURL(1); got != "https://origin.test/v1/streams/1/licence" {
			t.Errorf("licence URL %q", got)
		}
		if c := h.Counts(); c["session"] != 1 {
			t.Errorf("counts %v", c)
		}
	})
}
