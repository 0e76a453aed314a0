package main

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
)

// A replica started with flags that differ from the streams the store
// already holds serves the stored streams, unchanged, and says so: one
// warning line per differing flag given and stream, naming the stored
// value, the flag's and the fix. Flags left unset, or given equal, warn
// of nothing.
func TestReplicaFlagsDiffer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // made 0700 by the store
	replica := func() *keyserver.Issuer {
		store, err := keystore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		issuer, err := keyserver.NewIssuer(store, ptp.NewSim(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return issuer
	}
	stored := keystore.Event{Keys: 2, Schedule: origin.Schedule{Period: time.Second, Lead: 4 * time.Second, PresentDelay: 2 * time.Second}}
	all := func(string) bool { return true }
	if err := ensureStreams(replica(), []uint32{1}, []uint32{5}, stored, all, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	other := keystore.Event{Keys: 1, Schedule: origin.Schedule{Period: 2 * time.Second, Lead: 8 * time.Second, PresentDelay: 3 * time.Second}}
	for _, tc := range []struct {
		name            string
		keys, resources []uint32
		want            keystore.Event
		given           []string
		warnings        []string
	}{
		{name: "flags unset", keys: []uint32{1}, resources: []uint32{5}, want: other},
		{name: "equal flags given", keys: []uint32{1}, resources: []uint32{5}, want: stored, given: []string{"period", "lead", "present", "keys", "streams", "resource-streams"}},
		{name: "-period and -lead differ", keys: []uint32{1}, resources: []uint32{5}, want: other, given: []string{"period", "lead"}, warnings: []string{
			"stream 1 is stored with -period 1s, not the -period 2s given: it is served as stored, as every replica serves it; drop -period or set it to 1s",
			"stream 1 is stored with -lead 4s, not the -lead 8s given",
			"stream 5 is stored with -period 1s, not the -period 2s given",
			"stream 5 is stored with -lead 4s, not the -lead 8s given",
		}},
		{name: "-present and -keys differ", keys: []uint32{1}, want: other, given: []string{"present", "keys"}, warnings: []string{
			"stream 1 is stored with -present 2s, not the -present 3s given",
			"stream 1 is stored with -keys 2, not the -keys 1 given: it is served as stored, as every replica serves it; drop -keys or set it to 2",
		}},
		{name: "a resource stream listed as a key stream", keys: []uint32{1, 5}, want: stored, given: []string{"streams"}, warnings: []string{
			"stream 5 is stored as a stream of published resources (-resource-streams), not as a stream of content keys (-streams): it is served as stored; list it under the other flag, or use a new stream id",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logged bytes.Buffer
			given := func(flag string) bool { return strings.Contains(" "+strings.Join(tc.given, " ")+" ", " "+flag+" ") }
			issuer := replica()
			if err := ensureStreams(issuer, tc.keys, tc.resources, tc.want, given, slog.New(slog.NewTextHandler(&logged, nil))); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(logged.String(), "level=WARN"); n != len(tc.warnings) {
				t.Fatalf("%d warnings, want %d:\n%s", n, len(tc.warnings), logged.String())
			}
			for _, w := range tc.warnings {
				if !strings.Contains(logged.String(), w) {
					t.Errorf("no warning %q in:\n%s", w, logged.String())
				}
			}
			for _, s := range []uint32{1, 5} {
				if ev := issuer.Event(s); ev == nil || ev.Schedule != stored.Schedule || ev.Resources != (s == 5) {
					t.Fatalf("stream %d: %+v, want it served as stored", s, ev)
				}
			}
		})
	}
}
