package edgetest_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

var _ edge.CatchUpSender = (*edgetest.Sender)(nil)
var _ edge.RunSender = (*edgetest.Runner)(nil)

func release(t *testing.T, stream uint32, period uint64) []byte {
	b := make([]byte, wire.ReleaseLen)
	if _, err := (&wire.Release{Header: wire.Header{Stream: stream, Period: period}}).Encode(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &edgetest.Sender{ReleaseDelay: 5 * time.Millisecond}
		t0 := ptp.SystemTAI()
		d := [][]byte{release(t, 1, 7), release(t, 2, 8)}
		if n, err := s.Send(wire.TypeRelease, d); n != 2 || err != nil {
			t.Fatalf("Send: %d, %v", n, err)
		}
		if took := ptp.SystemTAI() - t0; took != int64(5*time.Millisecond) {
			t.Errorf("a RELEASE batch took %v, want 5ms", time.Duration(took))
		}
		if n, err := s.Send(wire.TypeAnnounce, d); n != 0 || !errors.Is(err, edgetest.ErrMismatch) {
			t.Errorf("mislabelled batch: %d, %v", n, err)
		}
		boom := errors.New("boom")
		s.Fail(boom)
		if n, err := s.Send(wire.TypeRelease, d); n != 0 || !errors.Is(err, boom) {
			t.Errorf("failing Send: %d, %v", n, err)
		}
		got := s.Sent()
		if len(got) != 2 || got[0].At != t0 || got[1].Stream != 2 || got[1].Period != 8 || got[1].Type != wire.TypeRelease ||
			s.Batches(wire.TypeRelease) != 1 || len(s.Of(wire.TypeAnnounce)) != 0 {
			t.Errorf("recorded %+v, %d batches", got, s.Batches(wire.TypeRelease))
		}
	})
}
