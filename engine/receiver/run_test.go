package receiver_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/datagram/datagramtest"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/wire"
)

var groupAddr = netip.MustParseAddrPort("192.0.2.2:7171")

// run starts r.Run over srcs and returns its result's channel.
func run(ctx context.Context, r *receiver.Receiver, srcs ...receiver.Source) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, srcs...) }()
	return done
}

func send(t testing.TB, p *datagramtest.Pipe, arrival time.Time, from netip.AddrPort, dgs ...[]byte) {
	t.Helper()
	for _, d := range dgs {
		if err := p.Send(d, arrival, from); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunDelivers: Run reads every source; a datagram's kernel stamp is its
// arrival, and one without is stamped by the device clock when read. When
// ctx ends, Run closes its sources and returns nil.
func TestRunDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		group, unicast := datagramtest.New(), datagramtest.New()
		ctx, cancel := context.WithCancel(t.Context())
		done := run(ctx, r, group, unicast)

		a, _ := f.keys(t, 1, 1)
		b, _ := f.keys(t, 2, 2)
		send(t, group, time.Time{}, groupAddr, a.Shards...)
		send(t, unicast, time.Time{}, edgeAddr, b.Shards...)
		time.Sleep(time.Second + 5*time.Millisecond)
		stamp := f.now.Add(time.Second + time.Millisecond)
		send(t, group, stamp, groupAddr, release(t, a, 1)) // stamped by the kernel
		send(t, unicast, time.Time{}, edgeAddr, release(t, b, 2))
		synctest.Wait() // both read: the copy below comes second, at the same instant
		send(t, group, time.Time{}, groupAddr, release(t, b, 1))
		synctest.Wait()

		got := map[uint32]receiver.Event{}
		for _, ev := range s.got() {
			got[ev.Stream] = ev
		}
		if len(s.got()) != 2 || len(got) != 2 {
			t.Fatalf("events %+v, want one per stream", s.got())
		}
		if ev := got[1]; ev.Arrival != tai(stamp) || !ev.ArrivalByKernel || ev.From != groupAddr || ev.Opened != tai(f.now.Add(time.Second+5*time.Millisecond)) {
			t.Errorf("stream 1: %+v, want the kernel stamp %d", ev, tai(stamp))
		}
		if ev := got[2]; ev.Arrival != tai(f.now.Add(time.Second+5*time.Millisecond)) || ev.ArrivalByKernel || ev.From != edgeAddr || ev.EdgeID != 2 {
			t.Errorf("stream 2: %+v, want the device clock when read", ev)
		}
		if st := r.Stats(); st.Delivered != 2 || st.Drops["duplicate"] == 0 {
			t.Errorf("stats %+v", st)
		}
		if group.Closed() || unicast.Closed() {
			t.Fatal("a source closed while Run was running")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
		if !group.Closed() || !unicast.Closed() {
			t.Fatal("Run returned without closing its sources")
		}
	})
}

// TestRunEndsAtDeadline: Run returns nil exactly when ctx's deadline
// passes, having closed its sources; nothing is read after.
func TestRunEndsAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		p := datagramtest.New()
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := r.Run(ctx, p); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Fatalf("Run returned after %v, want 5s", d)
		}
		if !p.Closed() {
			t.Fatal("source not closed")
		}
		if err := p.Send(keepalive(t), time.Time{}, edgeAddr); err == nil {
			t.Fatal("the source took a datagram after Run closed it")
		}
	})
}

// TestRunSourceFails: a source that fails ends Run at once with its error,
// and Run closes every source, the healthy one too.
func TestRunSourceFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		bad, good := datagramtest.New(), datagramtest.New()
		boom := errors.New("socket gone")
		done := run(t.Context(), r, bad, good)
		time.Sleep(time.Second)
		bad.Fail(boom)
		select {
		case err := <-done:
			if !errors.Is(err, boom) {
				t.Fatalf("Run: %v, want %v", err, boom)
			}
		case <-time.After(time.Hour):
			t.Fatal("Run still running an hour after a source failed")
		}
		if !bad.Closed() || !good.Closed() {
			t.Fatalf("closed: failing %v, healthy %v; want both", bad.Closed(), good.Closed())
		}
	})
}

// TestRunDropsTruncated: a datagram longer than wire.MaxDatagram, whether
// the source cut it or not, counts as malformed and is not handled.
func TestRunDropsTruncated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		p := datagramtest.New()
		ctx, cancel := context.WithCancel(t.Context())
		done := run(ctx, r, p)
		// One byte over fits the reader's buffer; far over is cut by it.
		// Both start as a valid keepalive, which alone is unexpected-type.
		long := append(keepalive(t), make([]byte, wire.MaxDatagram)...)
		send(t, p, time.Time{}, edgeAddr, long[:wire.MaxDatagram+1], long, keepalive(t))
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := r.Stats(); st.Drops["malformed"] != 2 || st.Drops["unexpected-type"] != 1 {
			t.Fatalf("stats %+v; want 2 malformed, 1 unexpected-type", st)
		}
	})
}
