package edge_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/ptp"
)

// TestAnnouncedDuringRelease: in the last moments before its instant a
// period is taken for release, neither pending nor released. A subscriber
// arriving then must still be given its ANNOUNCE (catch-up serves
// Announced), or it gets the RELEASE but never the body and loses the
// period.
func TestAnnouncedDuringRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		rec := &edgetest.Sender{True: clock.True}
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Repeat: 1})
		releaseAt := clock.True() + int64(10*time.Second)
		b := f.bundle(t, 1, 9, releaseAt)
		if err := e.Add(b); err != nil {
			t.Fatal(err)
		}
		start(t, e)
		// Within its wake-up head (20 ms) of the instant the edge takes the
		// period out of pending and waits on the clock.
		sleepUntil(releaseAt - 5*ms)
		if st := e.Stats(); st.Pending != 0 || st.Released != 0 {
			t.Fatalf("5 ms before the instant: stats %+v", st)
		}
		if got := e.Announced(1); !slices.EqualFunc(got, b.Shards, slices.Equal) {
			t.Errorf("Announced during the release: %d datagrams, want the period's %d shards", len(got), len(b.Shards))
		}
		if r := e.Released(1); len(r) != 0 {
			t.Errorf("Released before the instant: %d periods", len(r))
		}
		sleepUntil(releaseAt)
		if r := e.Released(1); len(r) != 1 {
			t.Fatalf("Released at the instant: %d periods", len(r))
		}
		if got := e.Announced(1); len(got) != 0 {
			t.Errorf("Announced after the release: %d datagrams, want none", len(got))
		}
	})
}
