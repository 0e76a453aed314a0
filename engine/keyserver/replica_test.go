package keyserver_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/keystoretest"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
)

// The replica tests run issuers sharing one keystoretest.Mem, as origin
// replicas share an etcd cluster, in virtual time.

func replica(t *testing.T, store keystore.State) *keyserver.Issuer {
	t.Helper()
	i, err := keyserver.NewIssuer(store, ptp.NewSim(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// twoReplicas returns two replicas on one fresh store, a schedule
// starting now (issuerSchedule's), and a fresh master key.
func twoReplicas(t *testing.T) (a, b *keyserver.Issuer, store *keystoretest.Mem, s origin.Schedule, master []byte) {
	store = new(keystoretest.Mem)
	a, b = replica(t, store), replica(t, store)
	s = issuerSchedule
	s.Epoch = ptp.NewSim().True()
	_, master, _ = origin.Generate()
	return a, b, store, s, master
}

// addBoth adds ev through a, then through b, which must find it stored.
func addBoth(t *testing.T, a, b *keyserver.Issuer, ev *keystore.Event) {
	t.Helper()
	if err := a.AddEvent(ev); err != nil {
		t.Fatal(err)
	}
	if err := b.AddEvent(ev); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second replica's AddEvent: %v, want ErrExists", err)
	}
}

// TestReplicasIssueOnce: two replicas run on one store, ticking out of
// step, and one of them dies half-way: every period is issued once (one
// store write each, no gap after the death), the second replica's event
// is the first one's, and both serve the same keys and bundles.
func TestReplicasIssueOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, store, s, masterA := twoReplicas(t)
		if !a.PublicKey().Equal(b.PublicKey()) {
			t.Fatal("replicas on one store sign with different keys")
		}
		_, masterB, _ := origin.Generate()
		if err := a.AddEvent(&keystore.Event{Stream: 1, Master: masterA, Keys: 2, Schedule: s}); err != nil {
			t.Fatal(err)
		}
		if err := b.AddEvent(&keystore.Event{Stream: 1, Master: masterB, Keys: 2, Schedule: s}); !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("second replica's AddEvent: %v, want ErrExists", err)
		}
		if string(b.Event(1).Master) != string(masterA) {
			t.Fatal("the second replica issues with its own master key, not the stored one")
		}
		ctxA, killA := context.WithCancel(t.Context())
		ctxB, stopB := context.WithCancel(t.Context())
		doneA, doneB := make(chan error), make(chan error)
		go func() { doneA <- a.Run(ctxA, 50*time.Millisecond) }()
		go func() { doneB <- b.Run(ctxB, 70*time.Millisecond) }()
		time.Sleep(490 * time.Millisecond)
		killA()
		<-doneA
		issuedByA := a.Issued()
		time.Sleep(570 * time.Millisecond) // to 1060 ms: B ticked at 1050, after period 8 was announced (1000)
		synctest.Wait()
		stopB()
		<-doneB
		if store.Puts != 8 {
			t.Errorf("%d periods stored, want 8 (periods 1…8, each once)", store.Puts)
		}
		if n := a.Issued() + b.Issued(); n != 8 {
			t.Errorf("replicas say they issued %d periods, want 8", n)
		}
		if issuedByA == 0 || b.Issued() == 0 {
			t.Errorf("issued by A %d, by B %d: both should have issued some", issuedByA, b.Issued())
		}
		for p := uint64(1); p <= 8; p++ {
			pa, err := a.Period(1, p)
			if err != nil {
				t.Fatalf("replica A, period %d: %v", p, err)
			}
			pb, err := b.Period(1, p)
			if err != nil {
				t.Fatalf("replica B, period %d: %v", p, err)
			}
			if pa.Keys[0] != pb.Keys[0] || pa.Keys[1] != pb.Keys[1] || pa.Bundle.RK != pb.Bundle.RK {
				t.Errorf("period %d: the replicas serve different keys", p)
			}
		}
		wa, errA := a.Window(1, 0)
		wb, errB := b.Window(1, 0)
		if errA != nil || errB != nil || len(wa) != len(wb) || len(wa) == 0 {
			t.Fatalf("windows: %d periods (%v) and %d (%v)", len(wa), errA, len(wb), errB)
		}
		for j := range wa {
			if wa[j].Bundle.RK != wb[j].Bundle.RK {
				t.Errorf("window entry %d differs between replicas", j)
			}
		}
	})
}

// TestReplicasAgreeOnKIDs: an encryptor asking each replica for one
// period (SPEKE) gets the first answer from both; other KIDs are refused
// by both.
func TestReplicasAgreeOnKIDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, _, s, master := twoReplicas(t)
		addBoth(t, a, b, &keystore.Event{Stream: 1, Master: master, Keys: 1, Schedule: s})
		kids := [][16]byte{{1, 2, 3}}
		pa, err := a.PeriodWithKIDs(1, 20, kids)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := b.PeriodWithKIDs(1, 20, kids)
		if err != nil {
			t.Fatal(err)
		}
		if pa.Keys[0] != pb.Keys[0] {
			t.Fatal("two replicas answered one period's KID with different keys")
		}
		for _, i := range []*keyserver.Issuer{a, b} {
			if _, err := i.PeriodWithKIDs(1, 20, [][16]byte{{9}}); !errors.Is(err, keyserver.ErrKIDConflict) {
				t.Errorf("other KIDs for an issued period: %v, want ErrKIDConflict", err)
			}
		}
	})
}

// TestReplicasPublishInOrder: resources published through two replicas
// are numbered as one stream, and each replica's window holds both.
func TestReplicasPublishInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, _, s, master := twoReplicas(t)
		s.Lead = resourceLead
		addBoth(t, a, b, &keystore.Event{Stream: 100, Master: master, Resources: true, Schedule: s})
		now := ptp.NewSim().True()
		p0, err := a.Publish(100, now+int64(2*resourceLead), []byte("first"))
		if err != nil {
			t.Fatal(err)
		}
		p1, err := b.Publish(100, now+int64(3*resourceLead), []byte("second"))
		if err != nil {
			t.Fatal(err)
		}
		if p0.Bundle.Period != 0 || p1.Bundle.Period != 1 {
			t.Fatalf("periods %d and %d, want 0 and 1", p0.Bundle.Period, p1.Bundle.Period)
		}
		if _, err := a.Publish(100, now+int64(2*resourceLead), []byte("third")); !errors.Is(err, keyserver.ErrLate) {
			t.Fatalf("a release before the other replica's last: %v, want ErrLate", err)
		}
		time.Sleep(2*resourceLead + time.Millisecond) // both announced
		for name, i := range map[string]*keyserver.Issuer{"A": a, "B": b} {
			w, err := i.Window(100, 0)
			if err != nil || len(w) != 2 || string(w[0].Resource) != "first" || string(w[1].Resource) != "second" {
				t.Errorf("replica %s's window: %d periods, %v", name, len(w), err)
			}
		}
	})
}

// TestReplicaTakesUpNewStreams: a stream one replica creates after
// another started is issued and served by both from the other's next
// tick: an edge failing over to it finds the stream there.
func TestReplicaTakesUpNewStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, _, s, master := twoReplicas(t)
		if err := a.AddEvent(&keystore.Event{Stream: 2, Master: master, Keys: 1, Schedule: s}); err != nil {
			t.Fatal(err)
		}
		if b.Event(2) != nil {
			t.Fatal("b knew stream 2 before it was told")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- b.Run(ctx, 50*time.Millisecond) }()
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		if ev := b.Event(2); ev == nil || string(ev.Master) != string(master) {
			t.Fatal("b does not serve the stream a created")
		}
		if b.Issued() == 0 {
			t.Error("b issued none of stream 2's due periods")
		}
		if got := b.Streams(); len(got) != 1 || got[0] != 2 {
			t.Errorf("b's streams %v, want [2]", got)
		}
	})
}

// staleStore answers its next `stale` Period reads "not found", as a
// replica reading behind the cluster might, and Events with down's error.
type staleStore struct {
	*keystoretest.Mem
	stale atomic.Int32
	down  atomic.Pointer[error]
}

func (s *staleStore) Period(stream uint32, period uint64) (*keystore.Period, error) {
	if s.stale.Add(-1) >= 0 {
		return nil, fmt.Errorf("%w: stale read", keystore.ErrNotFound)
	}
	return s.Mem.Period(stream, period)
}

func (s *staleStore) Events() ([]uint32, error) {
	if p := s.down.Load(); p != nil {
		return nil, *p
	}
	return s.Mem.Events()
}

// TestReplicaLosesRace: a replica that did not see a period another
// stored issues it anew, finds it stored when it writes, and serves the
// stored keys, counting the lost race, not an issuance.
func TestReplicaLosesRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := new(keystoretest.Mem)
		stale := &staleStore{Mem: mem}
		a, b := replica(t, mem), replica(t, stale)
		s := issuerSchedule
		s.Epoch = ptp.NewSim().True()
		_, master, _ := origin.Generate()
		addBoth(t, a, b, &keystore.Event{Stream: 1, Master: master, Keys: 1, Schedule: s})
		pa, err := a.Period(1, 3)
		if err != nil {
			t.Fatal(err)
		}
		stale.stale.Store(1) // b's first look misses it; the read after its write does not
		pb, err := b.Period(1, 3)
		if err != nil {
			t.Fatal(err)
		}
		if pb.Keys[0] != pa.Keys[0] || pb.Bundle.RK != pa.Bundle.RK {
			t.Fatal("the replica that lost the race serves its own keys")
		}
		if b.Lost() != 1 || b.Issued() != 0 || a.Issued() != 1 {
			t.Errorf("lost %d, issued %d by b, %d by a; want 1, 0, 1", b.Lost(), b.Issued(), a.Issued())
		}
	})
}

// TestStoreStatus: readiness says whether the store answered the
// issuer's last look, and why not.
func TestStoreStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &staleStore{Mem: new(keystoretest.Mem)}
		i := replica(t, store)
		if ok, why := i.StoreStatus(); ok || why != "not yet read" {
			t.Errorf("before Run: %v %q", ok, why)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- i.Run(ctx, 100*time.Millisecond) }()
		synctest.Wait()
		if ok, why := i.StoreStatus(); !ok || why != "answering" {
			t.Errorf("store up: %v %q", ok, why)
		}
		errDown := errors.New("etcdstore: list /embargo/events/: context deadline exceeded")
		store.down.Store(&errDown)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if ok, why := i.StoreStatus(); ok || why != errDown.Error() {
			t.Errorf("store down: %v %q", ok, why)
		}
		cancel()
		<-done
	})
}
