package cpix

import (
	"reflect"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/engine/cpix/cpixtest"
)

// FuzzDecodeBundles: no input panics; every refusal wraps exactly one
// sentinel; whatever is accepted re-encodes to a document that decodes to
// the same bundles.
func FuzzDecodeBundles(f *testing.F) {
	key, cert := recipients(f)
	doc, err := EncodeBundles(testBundles(2), cert)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add(doc[:len(doc)/3])
	f.Add([]byte(strings.Replace(string(doc), "?>", "?><!DOCTYPE CPIX>", 1)))
	f.Add([]byte(`<CPIX xmlns="urn:dashif:org:cpix"/>`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeBundles(data, key)
		if err != nil {
			if got != nil {
				t.Fatal("bundles returned with an error")
			}
			oneSentinel(t, err)
			return
		}
		again, err := EncodeBundles(got, cert, WithMaxSize(1<<30))
		if err != nil {
			t.Fatalf("accepted bundles do not re-encode: %v", err)
		}
		back, err := DecodeBundles(again, key, WithMaxSize(1<<30))
		if err != nil {
			t.Fatalf("re-encoded document refused: %v", err)
		}
		if !reflect.DeepEqual(got, back) {
			t.Fatal("re-encoded bundles differ")
		}
	})
}

// FuzzDecodePackagerKeys is FuzzDecodeBundles for packager documents.
func FuzzDecodePackagerKeys(f *testing.F) {
	key, cert := recipients(f)
	doc, err := EncodePackagerKeys(testPeriodKeys(2, 2), cert)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add(doc[:len(doc)/3])
	f.Add([]byte(`<CPIX xmlns="urn:dashif:org:cpix"><ContentKeyList/></CPIX>`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodePackagerKeys(data, key)
		if err != nil {
			if got != nil {
				t.Fatal("keys returned with an error")
			}
			oneSentinel(t, err)
			return
		}
		again, err := EncodePackagerKeys(got, cert, WithMaxSize(1<<30))
		if err != nil {
			t.Fatalf("accepted keys do not re-encode: %v", err)
		}
		back, err := DecodePackagerKeys(again, key, WithMaxSize(1<<30))
		if err != nil {
			t.Fatalf("re-encoded document refused: %v", err)
		}
		if !reflect.DeepEqual(got, back) {
			t.Fatal("re-encoded keys differ")
		}
	})
}

// FuzzParseSPEKERequest: any input is refused with one sentinel, or
// parsed into a request whose every KID appears once, in a period with one
// or two keys of distinct tracks, and which the encoder answers.
func FuzzParseSPEKERequest(f *testing.F) {
	for name := range cpixtest.SPEKERequests() {
		doc, version := spekeRequest(f, name)
		f.Add(doc, version)
		f.Add(doc[:len(doc)/2], version)
	}
	f.Add([]byte(`<CPIX xmlns="urn:dashif:org:cpix" version="2.3"><ContentKeyList/></CPIX>`), "2.0")
	f.Fuzz(func(t *testing.T, data []byte, version string) {
		req, err := ParseSPEKERequest(data, version)
		if err != nil {
			if req != nil {
				t.Fatal("request returned with an error")
			}
			oneSentinel(t, err)
			return
		}
		kids := map[[16]byte]bool{}
		for _, p := range req.Periods {
			if len(p.Keys) < 1 || len(p.Keys) > MaxTrackKeys {
				t.Fatalf("period %d has %d keys", p.Index, len(p.Keys))
			}
			for _, k := range p.Keys {
				if kids[k.KID] {
					t.Fatalf("KID %s twice", FormatUUID(k.KID))
				}
				kids[k.KID] = true
			}
		}
		if _, err := EncodeSPEKEResponse(req, answerKeys(req), WithMaxSize(1<<30)); err != nil {
			t.Fatalf("accepted request not answered: %v", err)
		}
	})
}
