package etcdstore_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/etcdstore"
	"github.com/embargo-live/embargo/engine/keystore/keystoretest"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/etcdtest"
)

func open(t *testing.T, endpoints ...string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints, Prefix: "/" + t.Name() + "/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance: two clients of one cluster, each through another
// member, as two replicas would be, keep the State contract: one signing
// key, the first event and the first period written stand.
func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	keystoretest.Conformance(t, func(t *testing.T) (keystore.State, keystore.State) {
		return open(t, c.Endpoints[0]), open(t, c.Endpoints[1])
	})
}

// TestMemberLoss: a store given every member keeps issuing once the
// cluster's leader dies: the period stored before is read back unchanged
// and the next one stores (after at most a few refusals while the client
// moves on, which the issuer's next tick absorbs).
func TestMemberLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	s := open(t, c.Endpoints...)
	ev := keystoretest.NewEvent(1)
	if err := s.CreateEvent(ev); err != nil {
		t.Fatal(err)
	}
	signer, err := s.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	o, err := origin.New(signer, ev.Master)
	if err != nil {
		t.Fatal(err)
	}
	first := keystoretest.NewPeriod(t, o, ev, 1)
	if err := s.PutPeriod(first); err != nil {
		t.Fatal(err)
	}
	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(leader)
	var refusals int
	for err := s.PutPeriod(keystoretest.NewPeriod(t, o, ev, 2)); err != nil; err = s.PutPeriod(keystoretest.NewPeriod(t, o, ev, 2)) {
		if errors.Is(err, keystore.ErrExists) {
			break // an earlier try was stored after all
		}
		if refusals++; refusals > 5 {
			t.Fatalf("PutPeriod keeps failing with the leader m%d down: %v", leader, err)
		}
	}
	got, err := s.Period(1, 1)
	if err != nil || got.Keys[0] != first.Keys[0] {
		t.Fatalf("period 1 after the member's loss: %v", err)
	}
	if ps, err := s.Periods(1, 0); err != nil || !slices.Equal(ps, []uint64{1, 2}) {
		t.Fatalf("Periods = %v, %v", ps, err)
	}
}

// TestOpenNoCluster: nothing listening is an error naming the endpoint
// and the fix, not a hang.
func TestOpenNoCluster(t *testing.T) {
	_, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "check the endpoints") {
		t.Fatalf("Open with no cluster: %v", err)
	}
}
