package keystoretest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/seal"
)

// Conformance checks the contract of keystore.State on two handles, a and
// b, that open returns on one shared, empty state — one directory opened
// twice, or two clients of one cluster, as two replicas would: the first
// writer wins everything it creates, the other gets ErrExists and reads
// back the winner, and racing writers of one period store exactly one.
func Conformance(t *testing.T, open func(t *testing.T) (a, b keystore.State)) {
	a, b := open(t)

	ka, err := a.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	kb, err := b.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if !ka.Equal(kb) {
		t.Fatal("two handles on one state got different signing keys")
	}

	if _, err := b.Event(7); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Event of a stream never created: %v, want ErrNotFound", err)
	}
	ev := NewEvent(7)
	if err := a.CreateEvent(ev); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateEvent(NewEvent(7)); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second CreateEvent through the other handle: %v, want ErrExists", err)
	}
	got, err := b.Event(7)
	if err != nil || !bytes.Equal(got.Master, ev.Master) || got.Schedule != ev.Schedule {
		t.Fatalf("the other handle reads event %+v, %v; want the first one created", got, err)
	}
	if err := a.CreateEvent(NewEvent(12)); err != nil {
		t.Fatal(err)
	}
	if s, err := b.Events(); err != nil || !slices.Equal(s, []uint32{7, 12}) {
		t.Fatalf("Events = %v, %v; want [7 12]", s, err)
	}

	o, err := origin.New(ka, ev.Master)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Period(7, 10); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Period never issued: %v, want ErrNotFound", err)
	}
	// Racing writers of one period, half through each handle: exactly one
	// stores, every other gets ErrExists, and both handles read the winner.
	const writers = 8
	periods := make([]*keystore.Period, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		periods[w] = NewPeriod(t, o, ev, 10)
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() { errs[w] = s.PutPeriod(periods[w]) })
	}
	wg.Wait()
	winner := -1
	for w, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both stored period 10", winner, w)
		case err == nil:
			winner = w
		case !errors.Is(err, keystore.ErrExists):
			t.Fatalf("writer %d: %v, want nil or ErrExists", w, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer stored period 10")
	}
	for _, s := range []keystore.State{a, b} {
		p, err := s.Period(7, 10)
		if err != nil {
			t.Fatal(err)
		}
		if p.Keys[0] != periods[winner].Keys[0] || p.Bundle.RK != periods[winner].Bundle.RK {
			t.Fatal("a handle reads a period other than the one stored")
		}
	}

	for _, n := range []uint64{100, 9, 11} {
		if err := a.PutPeriod(NewPeriod(t, o, ev, n)); err != nil {
			t.Fatal(err)
		}
	}
	if ps, err := b.Periods(7, 0); err != nil || !slices.Equal(ps, []uint64{9, 10, 11, 100}) {
		t.Fatalf("Periods = %v, %v; want [9 10 11 100]", ps, err)
	}
	if ps, err := b.Periods(7, 10); err != nil || !slices.Equal(ps, []uint64{10, 11, 100}) {
		t.Fatalf("Periods from 10 = %v, %v; want [10 11 100]", ps, err)
	}
	if ps, err := b.Periods(12, 0); err != nil || len(ps) != 0 {
		t.Fatalf("Periods of a stream with none = %v, %v", ps, err)
	}
}

// NewEvent is a rotating event on stream with a fresh master key.
func NewEvent(stream uint32) *keystore.Event {
	master := make([]byte, seal.MasterKeyLen)
	rand.Read(master)
	return &keystore.Event{Stream: stream, Master: master, Keys: 2,
		Schedule: origin.Schedule{Period: 2 * time.Second, Lead: 4 * time.Second, PresentDelay: 2 * time.Second}}
}

// NewPeriod issues ev's period n with fresh keys, not stored.
func NewPeriod(t testing.TB, o *origin.Origin, ev *keystore.Event, n uint64) *keystore.Period {
	t.Helper()
	keys, err := o.NewContentKeys(max(ev.Keys, 1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.Keys(ev.Stream, n, ev.Schedule.At(n), keys)
	if err != nil {
		t.Fatal(err)
	}
	return &keystore.Period{Bundle: b, Keys: keys, IssuedAt: time.Now().UTC()}
}
