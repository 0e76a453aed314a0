package edge_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// TestCarouselWaitsFromAfterSlowRound: the carousel's next round is due
// at its time however long the previous round took to send, as a unicast
// fan-out of a round to tens of thousands of subscribers does. Period 1's
// round goes out 50 ms in and takes 600 ms; period 2's is due 700 ms in
// and goes out then, not at 1.3 s (waiting from before the slow send).
func TestCarouselWaitsFromAfterSlowRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		rec := &edgetest.Sender{True: clock.True, AnnounceDelay: 600 * time.Millisecond}
		e := newEdge(t, edge.Config{
			Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec},
			Lead: 1300 * time.Millisecond, Rounds: 1, Repeat: 1,
		})
		start(t, e)
		t0 := clock.True()
		// Period 2 first, so that the carousel plans for it and sleeps; then
		// period 1, whose Add wakes the carousel for the slow round. (A wake-up
		// left pending would mask a wait miscounted from before the send.)
		if err := e.Add(f.bundle(t, 1, 2, t0+2000*ms)); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t0 + 50*ms)
		if err := e.Add(f.bundle(t, 1, 1, t0+650*ms)); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t0 + 2100*ms)
		var got []send
		for _, s := range rec.Sent() {
			if s.Stream == 1 && (len(got) == 0 || got[len(got)-1] != send{s.At - t0, s.Type, s.Stream, s.Period}) {
				got = append(got, send{s.At - t0, s.Type, s.Stream, s.Period})
			}
		}
		want := []send{
			{50 * ms, wire.TypeAnnounce, 1, 1},
			{650 * ms, wire.TypeRelease, 1, 1},
			{700 * ms, wire.TypeAnnounce, 1, 2},
			{2000 * ms, wire.TypeRelease, 1, 2},
		}
		if !slices.Equal(got, want) {
			t.Errorf("batches (time after start, type, stream, period) %v, want %v", got, want)
		}
	})
}

// TestCarouselStallSendsMissedRounds: a round that takes longer than the
// gap to the next makes the missed rounds go out right after it (a Spacing
// later), one batch holding a copy of the shards for each round missed, so
// that the loss budget's count of rounds still holds; and the period's own
// quiet time holds: rounds still overdue when it begins are dropped, not
// sent across the release.
func TestCarouselStallSendsMissedRounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		// Rounds every 100 ms from t0 to t0+900ms; each takes 250 ms.
		rec := &edgetest.Sender{True: clock.True, AnnounceDelay: 250 * time.Millisecond}
		e := newEdge(t, edge.Config{
			Clock: clock, Trusted: f.ring, Senders: []edge.Sender{rec},
			Lead: 1050 * time.Millisecond, Rounds: 10, Repeat: 1,
		})
		t0 := clock.True()
		if err := e.Add(f.bundle(t, 1, 1, t0+1050*ms)); err != nil {
			t.Fatal(err)
		}
		start(t, e)
		sleepUntil(t0 + 1100*ms)
		var at []int64
		for _, s := range rec.Of(wire.TypeAnnounce) {
			if len(at) == 0 || at[len(at)-1] != s.At-t0 {
				at = append(at, s.At-t0)
			}
		}
		// Each send ends 250 ms after it began and the next follows a
		// Spacing (2 ms) later: 0; rounds 1–2 at 250; 3–5 at 502; 6–7 at
		// 754. Rounds 8–9, overdue at 1006, fall in the quiet time (from
		// 1000) and are dropped.
		if want := []int64{0, 250 * ms, 502 * ms, 754 * ms}; !slices.Equal(at, want) {
			t.Errorf("rounds at %v after start, want %v", at, want)
		}
		shards := len(f.bundle(t, 1, 2, t0+1050*ms).Shards)
		if n := len(rec.Of(wire.TypeAnnounce)); n != 8*shards {
			t.Errorf("%d ANNOUNCE datagrams, want 8 rounds of %d shards", n, shards)
		}
		if st := e.Stats(); st.Rounds != 8 || st.Released != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
