package unicast

import (
	"testing"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// TestReleaseFirst: while a period's first RELEASE fans out, the
// carousel's passes stand aside, so that the release has the sender
// threads to itself. An
// ANNOUNCE fan-out to 20,000 subscribers (ten datagrams, 200,000 sends)
// is under way when a RELEASE goes to the same 20,000; while the release
// is sent, the announce threads finish at most the batch each is in.
// Root only: the subscribers are behind an ifb device that drops all.
func TestReleaseFirst(t *testing.T) {
	h := sinkHost(t)
	const n = 20_000
	var srv *Server
	if err := h.Do(func() (err error) { srv, err = newSinkServer(2, sinkAddrs(n)); return err }); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rel := releaseDatagram(t) // period 1
	ann := make([][]byte, 10)
	for i := range ann {
		ann[i] = releaseDatagram(t)
		ann[i][5] = byte(wire.TypeAnnounce) // a header is all the fan-out reads
	}
	srv.Send([][]byte{rel}) // build both plans outside the measurement
	srv.Send(ann[:1])
	rel[wire.HeaderLen-5] = 2 // the measured RELEASE is period 2's first
	if h, err := wire.Peek(rel); err != nil || h.Period != 2 {
		t.Fatalf("period %d, %v", h.Period, err)
	}

	before := srv.sent.Load()
	done := make(chan error, 1)
	go func() { _, err := srv.Send(ann); done <- err }()
	for srv.sent.Load()-before < n { // the first ANNOUNCE is well under way
		time.Sleep(100 * time.Microsecond)
	}
	t0, at0 := time.Now(), srv.sent.Load()
	if _, err := srv.Send([][]byte{rel}); err != nil {
		t.Fatal(err)
	}
	took, during := time.Since(t0), srv.sent.Load()-at0-n
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := srv.sent.Load() - before; got != uint64(len(ann)+1)*n {
		t.Fatalf("%d datagrams sent, want %d", got, (len(ann)+1)*n)
	}
	// Two threads, each finishing the batch it is in (and the kernel's
	// accounting of the one after, at most).
	if limit := uint64(2 * 2 * maxBatch); during > limit {
		t.Errorf("%d ANNOUNCE datagrams sent during the %v RELEASE fan-out, want at most %d", during, took, limit)
	}
	t.Logf("RELEASE to %d in %v; %d ANNOUNCE datagrams meanwhile", n, took, during)
}

// TestInstant: only a period's first RELEASE makes the carousel stand
// aside; its later copies, and older periods, do not.
func TestInstant(t *testing.T) {
	p := &planner{newest: map[uint32]uint64{}}
	for _, c := range []struct {
		stream uint32
		period uint64
		want   bool
	}{
		{1, 0, true}, {1, 0, false}, {1, 1, true}, {2, 1, true}, {1, 1, false}, {1, 0, false}, {1, 5, true}, {1, 3, false},
	} {
		if got := p.instant(c.stream, c.period); got != c.want {
			t.Errorf("stream %d period %d: instant %v, want %v", c.stream, c.period, got, c.want)
		}
	}
}
