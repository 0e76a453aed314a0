package keystore_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/keystoretest"
	"github.com/embargo-live/embargo/engine/origin"
)

// FuzzParseStored: what a store holds — from a directory or from etcd,
// where another process wrote it — parses into a checked event and
// period or is refused as ErrCorrupt, never a panic; what parses encodes
// back to what parses the same.
func FuzzParseStored(f *testing.F) {
	ev := keystoretest.NewEvent(7)
	evData, err := keystore.MarshalEvent(ev)
	if err != nil {
		f.Fatal(err)
	}
	signer, _, err := keystore.NewSigningKey()
	if err != nil {
		f.Fatal(err)
	}
	o, err := origin.New(signer, ev.Master)
	if err != nil {
		f.Fatal(err)
	}
	pData, err := keystore.MarshalPeriod(keystoretest.NewPeriod(f, o, ev, 10))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(evData)
	f.Add(pData)
	f.Add([]byte(`{"stream":7}`))
	f.Add([]byte(`{"bundle":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, err := keystore.ParseEvent(7, data, "fuzz"); err != nil {
			if !errors.Is(err, keystore.ErrCorrupt) {
				t.Fatalf("event refused without ErrCorrupt: %v", err)
			}
		} else {
			again, err := keystore.MarshalEvent(e)
			if err != nil {
				t.Fatalf("a parsed event does not encode: %v", err)
			}
			e2, err := keystore.ParseEvent(7, again, "fuzz")
			if err != nil || !bytes.Equal(e2.Master, e.Master) || e2.Schedule != e.Schedule || e2.Keys != e.Keys {
				t.Fatalf("event round trip: %v", err)
			}
		}
		if p, err := keystore.ParsePeriod(7, 10, data, "fuzz"); err != nil {
			if !errors.Is(err, keystore.ErrCorrupt) {
				t.Fatalf("period refused without ErrCorrupt: %v", err)
			}
		} else {
			again, err := keystore.MarshalPeriod(p)
			if err != nil {
				t.Fatalf("a parsed period does not encode: %v", err)
			}
			if _, err := keystore.ParsePeriod(7, 10, again, "fuzz"); err != nil {
				t.Fatalf("period round trip: %v", err)
			}
		}
	})
}
