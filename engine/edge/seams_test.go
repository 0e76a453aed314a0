package edge_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/edge/edgetest"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// TestRunSenderFailureEndsRun: a RunSender whose Run fails ends Edge.Run
// with that error, naming the sender, and stops the carousel and the
// release loop with it: a period due later is neither announced nor
// released.
func TestRunSenderFailureEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		plain := &edgetest.Sender{True: clock.True}
		runner := edgetest.NewRunner(&edgetest.Sender{True: clock.True})
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{plain, runner}, Lead: time.Second, Rounds: 2, Repeat: 1})
		t0 := clock.True()
		if err := e.Add(f.bundle(t, 1, 1, t0+2*int64(time.Second))); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(t.Context()) }()
		<-runner.Started()
		sleepUntil(t0 + 100*ms)
		boom := errors.New("socket gone")
		runner.End(boom)
		synctest.Wait()
		select {
		case err := <-done:
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), "sender 1") {
				t.Errorf("Run returned %v, want the error of sender 1", err)
			}
		default:
			t.Fatal("Run still running after its sender failed")
		}
		sleepUntil(t0 + 3*int64(time.Second))
		if n := len(plain.Sent()); n != 0 {
			t.Errorf("%d datagrams sent after Run returned", n)
		}
		if st := e.Stats(); st.Rounds != 0 || st.Released != 0 || st.Pending != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestRunSenderStoppingEndsRun: a RunSender that returns nil while the
// edge still runs has stopped serving: Run ends with an error saying so.
// When the edge's context ends first, Run returns the context's error.
func TestRunSenderStoppingEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		runner := edgetest.NewRunner(&edgetest.Sender{})
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{runner}})
		done := make(chan error, 1)
		go func() { done <- e.Run(t.Context()) }()
		<-runner.Started()
		runner.End(nil)
		if err := <-done; err == nil || !strings.Contains(err.Error(), "sender 0 stopped") {
			t.Errorf("Run returned %v, want sender 0 stopped", err)
		}

		runner = edgetest.NewRunner(&edgetest.Sender{})
		e = newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{runner}})
		stop := start(t, e)
		<-runner.Started()
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel: %v", err)
		}
	})
}

// TestCatchUpSenderGetsHistory: New hands the edge itself, as History, to
// every sender that serves catch-up, and only to those; what the history
// serves is what the edge released and holds.
func TestCatchUpSenderGetsHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		clock := ptp.NewSim()
		catchUp := &edgetest.Sender{True: clock.True}
		var plain edge.SenderFunc = func(_ wire.Type, dgs [][]byte) (int, error) { return len(dgs), nil }
		e := newEdge(t, edge.Config{Clock: clock, Trusted: f.ring, Senders: []edge.Sender{plain, catchUp}, Repeat: 1})
		h := catchUp.History()
		if h != edge.History(e) {
			t.Fatalf("catch-up sender's history is %v, want the edge", h)
		}
		t0 := clock.True()
		b1, b2 := f.bundle(t, 1, 1, t0+int64(time.Second)), f.bundle(t, 1, 2, t0+2*int64(time.Second))
		if err := e.Add(b1); err != nil {
			t.Fatal(err)
		}
		if err := e.Add(b2); err != nil {
			t.Fatal(err)
		}
		start(t, e)
		sleepUntil(t0 + int64(time.Second))
		rel := h.Released(1)
		if len(rel) != 1 || rel[0].Period != 1 || rel[0].RK != b1.RK {
			t.Fatalf("history released %v", rel)
		}
		if r := decodeRelease(t, rel[0].CatchUp); r.Flags&wire.FlagCatchUp == 0 || r.RK != b1.RK {
			t.Errorf("catch-up copy flags %#x", r.Flags)
		}
		if got := h.Announced(1); len(got) != len(b2.Shards) {
			t.Errorf("history announces %d datagrams, want period 2's %d", len(got), len(b2.Shards))
		}
	})
}
