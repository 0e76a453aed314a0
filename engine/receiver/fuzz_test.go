package receiver_test

import (
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
)

// FuzzHandle feeds arbitrary datagrams around a genuine period. Whatever
// the input, the receiver must not panic, and the only event it may ever
// deliver is the genuine period with the genuine keys. It runs outside a
// synctest bubble, so the device clock is fixed at the fixture's now.
func FuzzHandle(f *testing.F) {
	fx := newFixture(f)
	b, keys := fx.keys(f, 1, 7)
	rel := release(f, b, 1)
	for _, d := range b.Shards {
		f.Add(d, false)
	}
	f.Add(rel, true)
	f.Add(keepalive(f), false)
	f.Fuzz(func(t *testing.T, d []byte, first bool) {
		var s sink
		r := fx.receiver(t, &s, func(c *receiver.Config) {
			c.Streams = []uint32{1, 2, 7}
			c.Now = func() time.Time { return fx.now }
		})
		if first {
			feed(r, d)
		}
		feed(r, b.Shards[0])
		if !first {
			feed(r, d)
		}
		feed(r, rel)
		feed(r, d)
		if len(s.events) != 1 {
			t.Fatalf("%d events", len(s.events))
		}
		ev := s.events[0]
		if ev.Stream != 1 || ev.Period != 7 || len(ev.Keys) != len(keys) {
			t.Fatalf("event %+v", ev)
		}
		for i := range keys {
			if ev.Keys[i] != keys[i] {
				t.Fatalf("key %d is not the genuine one", i)
			}
		}
	})
}
