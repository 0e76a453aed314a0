package origin_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

func newOrigin(t testing.TB) (*origin.Origin, []byte) {
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return o, master
}

// TestKeysBundle: the bundle opens as an edge checks it, and the body's
// payload opened with RK and unwrapped with the master key is the keys.
func TestKeysBundle(t *testing.T) {
	o, master := newOrigin(t)
	keys, err := o.NewContentKeys(3)
	if err != nil {
		t.Fatal(err)
	}
	at := origin.Instants{ReleaseAt: 1_800_000_000_000_000_000, PresentAt: 1_800_000_002_000_000_000}
	b, err := o.Keys(4, 99, at, keys)
	if err != nil {
		t.Fatal(err)
	}
	op, err := bundle.Open(b, seal.NewKeyRing(o.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	if op.Decoded.PayloadType != wire.PayloadContentKeys || op.Decoded.ReleaseAt != at.ReleaseAt || op.Decoded.PresentAt != at.PresentAt {
		t.Errorf("body %+v", op.Decoded)
	}
	plain, err := seal.OpenAnnounce(nil, op.Body, &op.Decoded, &b.RK)
	if err != nil {
		t.Fatal(err)
	}
	got, err := seal.UnwrapKeys(nil, master, 4, 99, plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != keys[0] || got[2] != keys[2] {
		t.Errorf("unwrapped %v, want %v", got, keys)
	}
}

func TestNewRefuses(t *testing.T) {
	_, signer, _ := ed25519.GenerateKey(rand.Reader)
	master := make([]byte, seal.MasterKeyLen)
	for name, f := range map[string]func() error{
		"short signer": func() error { _, err := origin.New(signer[:10], master); return err },
		"short master": func() error { _, err := origin.New(signer, master[:5]); return err },
		"datagram":     func() error { _, err := origin.New(signer, master, origin.WithMaxDatagram(10)); return err },
	} {
		if err := f(); !errors.Is(err, origin.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	o, _ := origin.New(signer, master)
	if _, err := o.NewContentKeys(0); err == nil {
		t.Error("zero content keys accepted")
	}
	if _, err := o.NewContentKeys(wire.MaxContentKeys + 1); err == nil {
		t.Error("too many content keys accepted")
	}
}

func TestSchedule(t *testing.T) {
	sec := int64(time.Second)
	epoch := 100 * sec
	s := origin.Schedule{Epoch: epoch, Period: time.Second, Lead: 2500 * time.Millisecond, PresentDelay: 500 * time.Millisecond}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if at := s.At(3); at.ReleaseAt != epoch+3*sec || at.PresentAt != epoch+3*sec+sec/2 {
		t.Errorf("At(3) = %+v", at)
	}
	for _, c := range []struct {
		t           int64
		first, end  uint64
		current     uint64
		description string
	}{
		{0, 0, 0, 0, "well before the epoch: nothing due yet"},
		{epoch - 2500*int64(time.Millisecond) - 1, 0, 0, 0, "a nanosecond before period 0 comes due"},
		{epoch - 2500*int64(time.Millisecond), 0, 1, 0, "period 0 comes due exactly one lead before the epoch"},
		{epoch, 1, 3, 0, "at the epoch period 0 is released; 1 and 2 are within the lead"},
		{epoch + 10*sec + 1, 11, 13, 10, "mid-run"},
	} {
		first, end := s.Due(c.t)
		if first != c.first || end != c.end || s.Current(c.t) != c.current {
			t.Errorf("%s: Due(%d) = [%d, %d), Current %d; want [%d, %d), %d", c.description, c.t, first, end, s.Current(c.t), c.first, c.end, c.current)
		}
	}
	for name, bad := range map[string]origin.Schedule{
		"short period":  {Period: time.Millisecond, Lead: time.Millisecond},
		"no lead":       {Period: time.Second},
		"lead too long": {Period: time.Second, Lead: 9 * time.Second},
		"negative":      {Period: time.Second, Lead: time.Second, PresentDelay: -1},
	} {
		if err := bad.Check(); !errors.Is(err, origin.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRotation: a rotation started mid-schedule issues every stream's
// periods in order from the next one, each once, with fresh keys, each at
// the first tick after its announce time (releaseAt − Lead).
func TestRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _ := newOrigin(t)
		clock := ptp.NewSim()
		start, t0 := clock.True(), time.Now()
		// Period 25 was released at start; the rotation ticks every 10 ms.
		s := origin.Schedule{Epoch: start - int64(time.Second), Period: 40 * time.Millisecond, Lead: 100 * time.Millisecond}
		type issue struct {
			period uint64
			after  time.Duration
		}
		var got [2][]issue
		keys := map[seal.ContentKey]bool{}
		// 295 ms: the last tick is at 290 ms, and none coincides with the end.
		ctx, cancel := context.WithTimeout(t.Context(), 295*time.Millisecond)
		defer cancel()
		err := (&origin.Rotation{Origin: o, Schedule: s, Streams: []uint32{1, 2}, Clock: clock}).Run(ctx, func(is origin.Issued) error {
			got[is.Bundle.Stream-1] = append(got[is.Bundle.Stream-1], issue{is.Bundle.Period, time.Since(t0)})
			if len(is.Keys) != 1 || keys[is.Keys[0]] {
				t.Errorf("stream %d period %d: keys %x are not one fresh key", is.Bundle.Stream, is.Bundle.Period, is.Keys)
			}
			keys[is.Keys[0]] = true
			return nil
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		// Periods 26 and 27 are due at once; period p ≥ 28 comes due at
		// (p−25)·40 ms − 100 ms, on a tick; by 290 ms, 34 is the last.
		var want []issue
		for p := uint64(26); p <= 34; p++ {
			want = append(want, issue{p, max(0, time.Duration(p-25)*40*time.Millisecond-100*time.Millisecond)})
		}
		for i := range got {
			if !slices.Equal(got[i], want) {
				t.Errorf("stream %d issued %v, want %v", i+1, got[i], want)
			}
		}
	})
}

// TestRotationAfterClockSteps: a clock that read ahead and is stepped back
// does not leave the rotation waiting for the future it saw; an
// unsynchronized clock issues nothing.
func TestRotationAfterClockSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _ := newOrigin(t)
		clock := ptp.NewSim()
		start := clock.True()
		// 20 ms periods from start; the rotation ticks every 5 ms. The test
		// acts between ticks, so no action races a tick.
		s := origin.Schedule{Epoch: start, Period: 20 * time.Millisecond, Lead: 40 * time.Millisecond}
		clock.Step(time.Second) // reads a second ahead at first
		var issued []uint64
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			(&origin.Rotation{Origin: o, Schedule: s, Streams: []uint32{1}, Clock: clock}).Run(ctx, func(is origin.Issued) error {
				issued = append(issued, is.Bundle.Period)
				return nil
			})
		}()
		time.Sleep(52 * time.Millisecond)
		synctest.Wait()
		// Reading a second ahead, it announced periods 51..54.
		if want := []uint64{51, 52, 53, 54}; !slices.Equal(issued, want) {
			t.Fatalf("ahead: issued %v, want %v", issued, want)
		}
		clock.Step(-time.Second)
		time.Sleep(200 * time.Millisecond) // to 252 ms
		synctest.Wait()
		// From the tick at 55 ms it starts over at the due periods (3, 4),
		// and by the tick at 250 ms it has announced up to 14.
		want := []uint64{51, 52, 53, 54, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
		if !slices.Equal(issued, want) {
			t.Fatalf("after the step back: issued %v, want %v", issued, want)
		}
		clock.SetState(ptp.StateUnsynchronized, "test")
		time.Sleep(150 * time.Millisecond)
		cancel()
		<-done
		if !slices.Equal(issued, want) {
			t.Errorf("issued %v on an unsynchronized clock", issued[len(want):])
		}
	})
}

// TestRotationRestartReissuesSameRK: an embedded origin (Derive) stopped
// and started again reissues the periods it had already issued with the
// same RK and the same ANNOUNCE, so receivers holding the first body can
// open the RELEASE. With fresh randomness (the default) the restart drew a
// new RK for the next period, and every receiver lost it.
func TestRotationRestartReissuesSameRK(t *testing.T) {
	for _, derive := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			o, _ := newOrigin(t)
			clock := ptp.NewSim()
			s := origin.Schedule{Epoch: clock.True(), Period: 40 * time.Millisecond, Lead: 100 * time.Millisecond}
			issued := func() map[uint64]*bundle.Bundle {
				got := map[uint64]*bundle.Bundle{}
				ctx, cancel := context.WithTimeout(t.Context(), 15*time.Millisecond)
				defer cancel()
				rot := &origin.Rotation{Origin: o, Schedule: s, Streams: []uint32{1}, Clock: clock, Derive: derive}
				_ = rot.Run(ctx, func(is origin.Issued) error { got[is.Bundle.Period] = is.Bundle; return nil })
				return got
			}
			first := issued()
			time.Sleep(10 * time.Millisecond) // the edge restarts
			again := issued()
			same, differ := 0, 0
			for p, b := range again {
				a, ok := first[p]
				if !ok {
					continue
				}
				if a.RK == b.RK && slices.EqualFunc(a.Shards, b.Shards, bytes.Equal) {
					same++
				} else {
					differ++
				}
			}
			if same+differ == 0 {
				t.Fatalf("no period issued twice: %d then %d periods", len(first), len(again))
			}
			if derive && differ > 0 {
				t.Errorf("derived: %d of %d periods reissued with a different RK or body", differ, same+differ)
			}
			if !derive && same > 0 {
				t.Errorf("fresh randomness reissued %d periods identically: the control shows nothing", same)
			}
			// Derived secrets differ from period to period and stream to stream.
			if derive {
				a, b := o.Derive(1, 7), o.Derive(2, 7)
				ka, _ := a.NewContentKeys(1)
				kb, _ := b.NewContentKeys(1)
				kc, _ := o.Derive(1, 8).NewContentKeys(1)
				if ka[0] == kb[0] || ka[0] == kc[0] {
					t.Error("derived keys repeat across streams or periods")
				}
			}
		})
	}
}
