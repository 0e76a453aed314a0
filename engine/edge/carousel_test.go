package edge_test

import (
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// slowAnnounce is a recorder that takes d to send any ANNOUNCE, as a
// unicast fan-out of a round to tens of thousands of subscribers does.
type slowAnnounce struct {
	*recorder
	d time.Duration
}

func (s slowAnnounce) Send(typ wire.Type, dgs [][]byte) (int, error) {
	n, err := s.recorder.Send(typ, dgs)
	if typ == wire.TypeAnnounce {
		time.Sleep(s.d)
	}
	return n, err
}

// TestCarouselWaitsFromAfterSlowRound: the carousel's next round is due
// at its time however long the previous round took to send. Period 1's
// round goes out 50 ms in and takes 600 ms; period 2's is due 700 ms in.
// Waiting from before the slow send would put it at 1.3 s.
func TestCarouselWaitsFromAfterSlowRound(t *testing.T) {
	f := newFixture(t)
	clock := ptp.NewSim()
	rec := &recorder{clock: clock}
	const slow = 600 * time.Millisecond
	e, err := edge.New(edge.Config{
		Clock: clock, Trusted: f.ring, Senders: []edge.Sender{slowAnnounce{rec, slow}},
		Lead: 1300 * time.Millisecond, Rounds: 1, Repeat: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, e)
	start := clock.True()
	ms := func(n int64) int64 { return start + n*int64(time.Millisecond) }
	// Period 2 first, so that the carousel plans for it and sleeps; then
	// period 1, whose Add wakes the carousel for the slow round. (A wake-up
	// left pending would mask a wait miscounted from before the send.)
	if err := e.Add(f.bundle(t, 1, 2, ms(2000))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := e.Add(f.bundle(t, 1, 1, ms(650))); err != nil {
		t.Fatal(err)
	}
	var second int64
	wait.For(t, 5*time.Second, "period 2's round", func() bool {
		for _, s := range rec.sends() {
			if s.typ == wire.TypeAnnounce && s.period == 2 {
				second = s.at
				return true
			}
		}
		return false
	})
	// Due at 700 ms; waiting from before the send would make it 1.3 s.
	if late := time.Duration(second - ms(700)); late > 300*time.Millisecond {
		t.Errorf("period 2's round went out %v after it was due", late)
	}
}
