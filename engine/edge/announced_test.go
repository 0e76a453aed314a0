package edge_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
)

// heldClock is a synchronized clock with no uncertainty that reads what the
// test sets, so that a release can be held just short of its instant.
type heldClock struct{ now atomic.Int64 }

func (c *heldClock) Now() (ptp.Reading, error) {
	n := c.now.Load()
	return ptp.Reading{Earliest: n, Latest: n, State: ptp.StateSynchronized}, nil
}

// TestAnnouncedDuringRelease: in the last moments before its instant a
// period is taken for release, neither pending nor released. A subscriber
// arriving then must still be given its ANNOUNCE (catch-up serves
// Announced), or it gets the RELEASE but never the body and loses the
// period.
func TestAnnouncedDuringRelease(t *testing.T) {
	f := newFixture(t)
	releaseAt := ptp.SystemTAI() + int64(time.Hour)
	clock := &heldClock{}
	clock.now.Store(releaseAt - int64(5*time.Millisecond))
	sim := ptp.NewSim()
	rec := &recorder{clock: sim}
	e, err := edge.New(edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec}, Repeat: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := f.bundle(t, 1, 9, releaseAt)
	if err := e.Add(b); err != nil {
		t.Fatal(err)
	}
	run(t, e)
	// Within its wake-up head of the instant the edge takes the period out
	// of pending and waits on the clock.
	wait.For(t, 5*time.Second, "the release to be under way", func() bool { return e.Stats().Pending == 0 })
	if got := e.Announced(1); !slices.EqualFunc(got, b.Shards, slices.Equal) {
		t.Errorf("Announced during the release: %d datagrams, want the period's %d shards", len(got), len(b.Shards))
	}
	if r := e.Released(1); len(r) != 0 {
		t.Errorf("Released before the instant: %d periods", len(r))
	}
	clock.now.Store(releaseAt)
	wait.For(t, 5*time.Second, "release", func() bool { return len(e.Released(1)) == 1 })
	if got := e.Announced(1); len(got) != 0 {
		t.Errorf("Announced after the release: %d datagrams, want none", len(got))
	}
}
