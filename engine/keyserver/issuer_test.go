package keyserver_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
)

// The issuer's tests run in virtual time (testing/synctest): the Sim clock
// reads the bubble's time, so what is issued when is exact.

// issuerSchedule is stream 1's: period p released p·200 ms after the
// event is created, announced 600 ms before.
var issuerSchedule = origin.Schedule{Period: 200 * time.Millisecond, Lead: 600 * time.Millisecond, PresentDelay: 200 * time.Millisecond}

// newIssuer opens dir and, on first use, creates stream 1's event with
// period 0 released now.
func newIssuer(t testing.TB, dir string) *keyserver.Issuer {
	t.Helper()
	store, err := keystore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := ptp.NewSim()
	issuer, err := keyserver.NewIssuer(store, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if issuer.Event(1) == nil {
		_, master, _ := origin.Generate()
		s := issuerSchedule
		s.Epoch = clock.True()
		if err := issuer.AddEvent(&keystore.Event{Stream: 1, Master: master, Keys: 2, Schedule: s}); err != nil {
			t.Fatal(err)
		}
	}
	return issuer
}

func periods(ps []*keystore.Period) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.Bundle.Period
	}
	return out
}

func span(first, last uint64) []uint64 {
	var out []uint64
	for p := first; p <= last; p++ {
		out = append(out, p)
	}
	return out
}

// TestIssuerIssuesAhead: Run stores each period at its announce time
// (releaseAt − Lead), on the first tick at or after it, and never one
// whose release has come.
func TestIssuerIssuesAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "state")
		i := newIssuer(t, dir)
		t0 := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- i.Run(ctx, 50*time.Millisecond) }()
		// Ticks fall on multiples of 50 ms; the test looks between them.
		time.Sleep(1010 * time.Millisecond)
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		store, err := keystore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		// Period 0 was released as the event began: never issued. By 1 s,
		// period 8 (released at 1.6 s) is the last announced.
		for _, p := range []uint64{0, 9} {
			if _, err := store.Period(1, p); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("period %d: %v, want ErrNotFound", p, err)
			}
		}
		for p := uint64(1); p <= 8; p++ {
			got, err := store.Period(1, p)
			if err != nil {
				t.Fatalf("period %d: %v", p, err)
			}
			want := t0.Add(max(0, time.Duration(p)*issuerSchedule.Period-issuerSchedule.Lead))
			if !got.IssuedAt.Equal(want) {
				t.Errorf("period %d issued at +%v, want +%v", p, got.IssuedAt.Sub(t0), want.Sub(t0))
			}
			if len(got.Keys) != 2 {
				t.Errorf("period %d: %d content keys, want 2", p, len(got.Keys))
			}
		}
		// The counter the origin's metrics export: periods 1…8.
		if n := i.Issued(); n != 8 {
			t.Errorf("Issued() = %d, want 8", n)
		}
	})
}

// TestIssuerWindow: an edge polling gets the released periods that were
// issued (up to wire.MaxCatchUp) and every announced one, from `from` on.
func TestIssuerWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i := newIssuer(t, filepath.Join(t.TempDir(), "state"))
		w, err := i.Window(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := span(1, 3); !slices.Equal(periods(w), want) {
			t.Fatalf("at the start: window %v, want %v", periods(w), want)
		}
		time.Sleep(time.Second + 10*time.Millisecond)
		// Periods 1..5 are released (1..3 were issued, 4 and 5 never were:
		// nobody asked before their release); 6..8 are announced now.
		for _, c := range []struct {
			from uint64
			want []uint64
		}{
			{0, []uint64{1, 2, 3, 6, 7, 8}},
			{3, []uint64{3, 6, 7, 8}},
			{7, []uint64{7, 8}},
			{100, nil},
		} {
			w, err := i.Window(1, c.from)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(periods(w), c.want) {
				t.Errorf("from %d: window %v, want %v", c.from, periods(w), c.want)
			}
		}
		if _, err := i.Window(9, 0); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("unknown stream: %v", err)
		}
	})
}

// TestRestartKeepsKeys: a new issuer on the same state directory serves
// exactly the periods, secrets and keys the first one issued, those
// released since included.
func TestRestartKeepsKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "state")
		a := newIssuer(t, dir)
		first, err := a.Window(1, 0)
		if err != nil || len(first) != 3 {
			t.Fatalf("window: %d periods, %v", len(first), err)
		}
		time.Sleep(500 * time.Millisecond) // periods 1 and 2 are released
		b := newIssuer(t, dir)
		if !b.PublicKey().Equal(a.PublicKey()) {
			t.Fatal("signing key changed across the restart")
		}
		for _, p := range first {
			got, err := b.Period(1, p.Bundle.Period)
			if err != nil {
				t.Fatal(err)
			}
			if got.Bundle.RK != p.Bundle.RK || got.Keys[0] != p.Keys[0] || got.Keys[1] != p.Keys[1] {
				t.Fatalf("period %d changed across the restart", p.Bundle.Period)
			}
		}
	})
}

// TestNeverIssuesThePast: a period whose release has passed and that was
// never issued stays missing rather than be made up after the fact; one
// not yet released is issued when asked for.
func TestNeverIssuesThePast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i := newIssuer(t, filepath.Join(t.TempDir(), "state"))
		time.Sleep(time.Second) // period 5 is released now
		for _, p := range []uint64{2, 5} {
			if _, err := i.Period(1, p); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("released period %d: %v, want ErrNotFound", p, err)
			}
		}
		got, err := i.Period(1, 6)
		if err != nil || got.Bundle.Period != 6 {
			t.Fatalf("period 6 (released in 200 ms): %v", err)
		}
	})
}

// TestStreamsInOrder: the streams are listed in order, so the session
// description a device chooses its stream from reads the same each time.
func TestStreamsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		i := newIssuer(t, filepath.Join(t.TempDir(), "state"))
		for _, s := range []uint32{9, 3, 7, 5, 2} {
			_, master, _ := origin.Generate()
			sch := issuerSchedule
			sch.Epoch = i.Event(1).Schedule.Epoch
			if err := i.AddEvent(&keystore.Event{Stream: s, Master: master, Keys: 1, Schedule: sch}); err != nil {
				t.Fatal(err)
			}
		}
		for range 5 {
			if got, want := i.Streams(), []uint32{1, 2, 3, 5, 7, 9}; !slices.Equal(got, want) {
				t.Fatalf("streams %v, want %v", got, want)
			}
		}
	})
}

// TestAddEventRefusesKeys: an event with more content keys per period
// than packager documents can give each its own context is refused before
// anything is stored.
func TestAddEventRefusesKeys(t *testing.T) {
	issuer := newIssuer(t, filepath.Join(t.TempDir(), "state"))
	_, master, _ := origin.Generate()
	err := issuer.AddEvent(&keystore.Event{Stream: 2, Master: master, Keys: 3, Schedule: issuerSchedule})
	if err == nil || issuer.Event(2) != nil {
		t.Fatalf("3 keys per period accepted (%v)", err)
	}
	t.Log(err)
}
