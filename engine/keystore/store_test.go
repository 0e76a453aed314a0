package keystore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/keystoretest"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/seal"
)

func openStore(t *testing.T) (*keystore.Store, string) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := keystore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestSigningKeySurvivesReopen(t *testing.T) {
	s, dir := openStore(t)
	k1, err := s.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := keystore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s2.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("signing key changed across a reopen")
	}
	fi, err := os.Stat(filepath.Join(dir, "origin.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("origin.key mode %v, %v", fi.Mode().Perm(), err)
	}
}

func TestRefusesOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(dir); !errors.Is(err, keystore.ErrPermissions) {
		t.Fatalf("world-readable state dir: %v", err)
	}
}

func TestPeriodsAreNeverReplaced(t *testing.T) {
	s, dir := openStore(t)
	master := make([]byte, seal.MasterKeyLen)
	rand.Read(master)
	ev := &keystore.Event{Stream: 3, Master: master, Keys: 2,
		Schedule: origin.Schedule{Period: 2 * time.Second, Lead: 4 * time.Second, PresentDelay: 2 * time.Second}}
	if err := s.CreateEvent(ev); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateEvent(ev); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second CreateEvent: %v", err)
	}
	signer, _ := s.SigningKey()
	o, err := origin.New(signer, master)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := o.NewContentKeys(2)
	b, err := o.Keys(3, 10, ev.Schedule.At(10), keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutPeriod(&keystore.Period{Bundle: b, Keys: keys}); err != nil {
		t.Fatal(err)
	}
	other, _ := o.NewContentKeys(2)
	b2, _ := o.Keys(3, 10, ev.Schedule.At(10), other)
	if err := s.PutPeriod(&keystore.Period{Bundle: b2, Keys: other}); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := s.Period(3, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got.Keys[0] != keys[0] || got.Bundle.RK != b.RK || !bytes.Equal(got.Bundle.Shards[0], b.Shards[0]) {
		t.Fatal("stored period differs from the first one written")
	}
	if _, err := s.Period(3, 11); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("missing period: %v", err)
	}
	// No temporary files are left behind.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	// A corrupt file is reported, not half-read.
	path := filepath.Join(dir, "events", "3", "periods", "10.json")
	os.Chmod(path, 0o600)
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Period(3, 10); !errors.Is(err, keystore.ErrCorrupt) {
		t.Fatalf("corrupt period: %v", err)
	}
}

// TestResourcePeriods: a resource stream's event and periods survive a
// reopen byte for byte, and Periods lists the stored periods in numeric
// order, ignoring anything else in the directory.
func TestResourcePeriods(t *testing.T) {
	s, dir := openStore(t)
	master := make([]byte, seal.MasterKeyLen)
	rand.Read(master)
	ev := &keystore.Event{Stream: 100, Master: master, Resources: true,
		Schedule: origin.Schedule{Period: 2 * time.Second, Lead: 4 * time.Second}}
	if err := s.CreateEvent(ev); err != nil {
		t.Fatal(err)
	}
	signer, _ := s.SigningKey()
	o, err := origin.New(signer, master)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []uint64{10, 2, 9} {
		b, err := o.Resource(100, p, origin.Instants{ReleaseAt: int64(p) * 1e9, PresentAt: int64(p) * 1e9}, []byte{byte(p)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutPeriod(&keystore.Period{Bundle: b, Resource: []byte{byte(p)}}); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "events", "100", "periods", "notes.txt"), nil, 0o600)
	s2, err := keystore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Periods(100, 0)
	if err != nil || !slices.Equal(got, []uint64{2, 9, 10}) {
		t.Fatalf("Periods = %v, %v", got, err)
	}
	e2, err := s2.Event(100)
	if err != nil || !e2.Resources {
		t.Fatalf("event %+v, %v", e2, err)
	}
	p, err := s2.Period(100, 9)
	if err != nil || !bytes.Equal(p.Resource, []byte{9}) {
		t.Fatalf("period 9: %+v, %v", p, err)
	}
}

// TestConformance: the directory store keeps the State contract for two
// handles on one directory (one process's concurrent requests).
func TestConformance(t *testing.T) {
	keystoretest.Conformance(t, func(t *testing.T) (keystore.State, keystore.State) {
		s, dir := openStore(t)
		s2, err := keystore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s, s2
	})
}

func TestMemConformance(t *testing.T) {
	keystoretest.Conformance(t, func(t *testing.T) (keystore.State, keystore.State) {
		m := new(keystoretest.Mem)
		return m, m
	})
}
