package receiver_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/receiver/skew"
)

// TestMaxAgeBoundary: a body is accepted while its presentAt is no older
// than MaxAge by the device clock, to the nanosecond, and dropped as an old
// period one nanosecond later; a negative MaxAge never drops. Period 0's
// presentAt is the fixture's now + 2 s.
func TestMaxAgeBoundary(t *testing.T) {
	cases := []struct {
		name      string
		maxAge    time.Duration
		after     time.Duration // virtual time before the period's datagrams
		delivered bool
	}{
		{"default, at the bound", 0, 2*time.Second + receiver.DefaultMaxAge, true},
		{"default, 1ns past", 0, 2*time.Second + receiver.DefaultMaxAge + 1, false},
		{"1s, at the bound", time.Second, 3 * time.Second, true},
		{"1s, 1ns past", time.Second, 3*time.Second + 1, false},
		{"disabled", -1, 1000 * time.Hour, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				var s sink
				r := f.receiver(t, &s, func(cfg *receiver.Config) { cfg.MaxAge = c.maxAge })
				b, _ := f.keys(t, 1, 0)
				time.Sleep(c.after)
				feed(r, b.Shards...)
				feed(r, release(t, b, 1))
				st := r.Stats()
				if c.delivered {
					if len(s.events) != 1 || st.Drops["old-period"] != 0 {
						t.Fatalf("%d events, stats %+v; want the period delivered", len(s.events), st)
					}
					return
				}
				// The completed body is the one old-period drop; the
				// RELEASE finds no body and waits.
				if len(s.events) != 0 || st.Delivered != 0 || st.Drops["old-period"] != 1 {
					t.Fatalf("%d events, stats %+v; want one old-period drop", len(s.events), st)
				}
			})
		})
	}
}

// TestEarlyReleaseKeepsItsArrival: a RELEASE that comes before its body
// waits for it; the period is delivered when the body completes, with the
// RELEASE's arrival (how long it waited does not count as skew) and the
// body's completion as Opened.
func TestEarlyReleaseKeepsItsArrival(t *testing.T) {
	for _, wait := range []time.Duration{300 * time.Millisecond, 9 * time.Minute} {
		t.Run(wait.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				var s sink
				r := f.receiver(t, &s, nil)
				b, _ := f.keys(t, 1, 1) // releaseAt is now + 1 s
				time.Sleep(time.Second)
				feed(r, release(t, b, 1)) // no stamp: the device clock, exactly releaseAt
				time.Sleep(wait)
				feed(r, b.Shards...)
				if len(s.events) != 1 {
					t.Fatalf("%d events; stats %+v", len(s.events), r.Stats())
				}
				ev := s.events[0]
				if ev.Arrival != b.ReleaseAt {
					t.Errorf("arrival %d, want the RELEASE's %d", ev.Arrival, b.ReleaseAt)
				}
				if want := b.ReleaseAt + int64(wait); ev.Opened != want {
					t.Errorf("opened %d, want %d (when the body completed)", ev.Opened, want)
				}
				if st := r.Stats(); st.Skew.Total() != 1 || st.Skew.Counts[skew.Bucket(0)] != 1 {
					t.Errorf("skew %v, want one sample of 0", st.Skew.Counts)
				}
			})
		})
	}
}

// TestEarlyReleaseOutlivesMaxAge: a RELEASE held for a body that completes
// only after its presentAt is older than MaxAge delivers nothing: the age
// check is on the body, whatever waited for it.
func TestEarlyReleaseOutlivesMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, func(c *receiver.Config) { c.MaxAge = time.Minute })
		b, _ := f.keys(t, 1, 1) // presentAt is now + 3 s
		time.Sleep(time.Second)
		feed(r, release(t, b, 1))
		time.Sleep(2*time.Second + time.Minute + 1)
		feed(r, b.Shards...)
		if st := r.Stats(); len(s.events) != 0 || st.Delivered != 0 || st.Drops["old-period"] != 1 {
			t.Fatalf("%d events, stats %+v; want one old-period drop", len(s.events), st)
		}
	})
}

// TestNoStampIsDeviceClock: a datagram without a kernel stamp arrives when
// the receiver handles it by its clock, so Arrival and Opened are the same
// instant and the skew is the device's lateness.
func TestNoStampIsDeviceClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		r := f.receiver(t, &s, nil)
		b, _ := f.keys(t, 2, 1) // releaseAt is now + 1 s
		feed(r, b.Shards...)
		late := 1*time.Second + 37*time.Millisecond
		time.Sleep(late)
		feed(r, release(t, b, 1))
		if len(s.events) != 1 {
			t.Fatalf("%d events", len(s.events))
		}
		ev := s.events[0]
		if want := tai(f.now.Add(late)); ev.Arrival != want || ev.Opened != want {
			t.Fatalf("arrival %d opened %d, want both %d", ev.Arrival, ev.Opened, want)
		}
		if st := r.Stats(); st.Skew.Counts[skew.Bucket(37*time.Millisecond)] != 1 {
			t.Fatalf("skew %v, want one sample of 37ms", st.Skew.Counts)
		}
	})
}

// TestExplicitClock: Config.Now, when set, is the device clock instead of
// time.Now.
func TestExplicitClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var s sink
		device := f.now.Add(-time.Hour) // an hour slow
		r := f.receiver(t, &s, func(c *receiver.Config) { c.Now = func() time.Time { return device } })
		b, _ := f.keys(t, 1, 1)
		time.Sleep(time.Hour)
		feed(r, b.Shards...)
		feed(r, release(t, b, 1))
		if len(s.events) != 1 || s.events[0].Arrival != tai(device) || s.events[0].Opened != tai(device) {
			t.Fatalf("events %+v, want one stamped %d", s.events, tai(device))
		}
	})
}
