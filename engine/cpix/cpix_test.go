package cpix

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

func TestBundlesRoundTrip(t *testing.T) {
	key, cert := recipients(t)
	in := testBundles(3)
	doc, err := EncodeBundles(in, cert, WithContentID("event <1> & co"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBundles(doc, key)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
}

// TestBundlesFromOrigin: bundles as the origin makes them survive the
// document and still pass bundle.Open, as an edge checks them.
func TestBundlesFromOrigin(t *testing.T) {
	key, cert := recipients(t)
	o, _, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var in []*bundle.Bundle
	for p := range uint64(2) {
		keys, err := o.NewContentKeys(2)
		if err != nil {
			t.Fatal(err)
		}
		at := origin.Instants{ReleaseAt: testReleaseAt + int64(p)*testPeriodLen, PresentAt: testReleaseAt + int64(p+1)*testPeriodLen}
		b, err := o.Keys(testStream, 40+p, at, keys)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, b)
	}
	doc, err := EncodeBundles(in, cert)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeBundles(doc, key)
	if err != nil {
		t.Fatal(err)
	}
	ring := seal.NewKeyRing(o.PublicKey())
	for i, b := range out {
		if _, err := bundle.Open(b, ring); err != nil {
			t.Fatalf("bundle %d: %v", i, err)
		}
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatal("decoded bundles differ")
	}
}

func TestPackagerRoundTrip(t *testing.T) {
	key, cert := recipients(t)
	in := testPeriodKeys(3, 2)
	doc, err := EncodePackagerKeys(in, cert, WithScheme("cbcs"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(doc), `commonEncryptionScheme="cbcs"`); n != 6 {
		t.Errorf("%d keys say cbcs, want 6", n)
	}
	out, err := DecodePackagerKeys(doc, key)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
}

// TestDocumentStructure reads an encoded document back with a generic
// namespace-aware parser: the namespaces, element order and attributes
// are CPIX's, and the prefixes are the conventional ones.
func TestDocumentStructure(t *testing.T) {
	_, cert := recipients(t)
	in := testBundles(2)
	doc, err := EncodeBundles(in, cert, WithContentID("match-1"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	for _, decl := range []string{
		`<?xml version="1.0" encoding="UTF-8"?>`,
		`xmlns="urn:dashif:org:cpix"`,
		`xmlns:ds="http://www.w3.org/2000/09/xmldsig#"`,
		`xmlns:enc="http://www.w3.org/2001/04/xmlenc#"`,
		`xmlns:pskc="urn:ietf:params:xml:ns:keyprov:pskc"`,
		`xmlns:emb="` + Namespace + `"`,
		`<MACMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha512">`,
		`<DocumentKey>`,
		`<ContentKeyUsageRule kid="` + FormatUUID(BundleKID(testStream, 100)) + `">`,
	} {
		if !strings.Contains(s, decl) {
			t.Errorf("document lacks %s", decl)
		}
	}

	paths := map[string]int{}
	attrs := map[string]map[string]string{}
	var top []string
	var stack []string
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch el := tok.(type) {
		case xml.StartElement:
			stack = append(stack, short(el.Name))
			p := strings.Join(stack, "/")
			paths[p]++
			if len(stack) == 2 {
				top = append(top, stack[1])
			}
			if attrs[p] == nil {
				attrs[p] = map[string]string{}
				for _, a := range el.Attr {
					attrs[p][a.Name.Local] = a.Value
				}
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	wantTop := []string{"cpix:DeliveryDataList", "cpix:ContentKeyList", "cpix:ContentKeyPeriodList", "cpix:ContentKeyUsageRuleList"}
	if !reflect.DeepEqual(top, wantTop) {
		t.Errorf("top-level order %v, want %v", top, wantTop)
	}
	if a := attrs["cpix:CPIX"]; a["version"] != "2.4" || a["contentId"] != "match-1" {
		t.Errorf("root attributes %v", a)
	}
	for p, n := range map[string]int{
		"cpix:CPIX/cpix:DeliveryDataList/cpix:DeliveryData/cpix:DeliveryKey/ds:X509Data/ds:X509Certificate":                                           1,
		"cpix:CPIX/cpix:DeliveryDataList/cpix:DeliveryData/cpix:DocumentKey/cpix:Data/pskc:Secret/pskc:EncryptedValue/enc:CipherData/enc:CipherValue": 1,
		"cpix:CPIX/cpix:DeliveryDataList/cpix:DeliveryData/cpix:MACMethod/pskc:MACKey/enc:EncryptionMethod":                                           1,
		"cpix:CPIX/cpix:DeliveryDataList/cpix:DeliveryData/cpix:MACMethod/pskc:MACKey/enc:CipherData/enc:CipherValue":                                 1,
		"cpix:CPIX/cpix:ContentKeyList/cpix:ContentKey/cpix:Data/pskc:Secret/pskc:EncryptedValue/enc:EncryptionMethod":                                2,
		"cpix:CPIX/cpix:ContentKeyList/cpix:ContentKey/cpix:Data/pskc:Secret/pskc:EncryptedValue/enc:CipherData/enc:CipherValue":                      2,
		"cpix:CPIX/cpix:ContentKeyList/cpix:ContentKey/cpix:Data/pskc:Secret/pskc:ValueMAC":                                                           2,
		"cpix:CPIX/cpix:ContentKeyUsageRuleList/cpix:ContentKeyUsageRule/emb:Bundle/emb:Announce":                                                     6,
		"cpix:CPIX/cpix:ContentKeyUsageRuleList/cpix:ContentKeyUsageRule/emb:Bundle/emb:MAC":                                                          2,
		"cpix:CPIX/cpix:ContentKeyPeriodList/cpix:ContentKeyPeriod":                                                                                   2,
		"cpix:CPIX/cpix:ContentKeyUsageRuleList/cpix:ContentKeyUsageRule/cpix:KeyPeriodFilter":                                                        2,
	} {
		if paths[p] != n {
			t.Errorf("%d × %s, want %d", paths[p], p, n)
		}
	}
	period := attrs["cpix:CPIX/cpix:ContentKeyPeriodList/cpix:ContentKeyPeriod"]
	start := ptp.DefaultTAIOffset.ToTime(in[0].ReleaseAt).UTC().Format(time.RFC3339Nano)
	end := ptp.DefaultTAIOffset.ToTime(in[0].PresentAt).UTC().Format(time.RFC3339Nano)
	if period["id"] != "s7-p100" || period["start"] != start || period["end"] != end {
		t.Errorf("period %v, want id s7-p100 start %s end %s", period, start, end)
	}
	if a := attrs["cpix:CPIX/cpix:ContentKeyUsageRuleList/cpix:ContentKeyUsageRule/cpix:KeyPeriodFilter"]; a["periodId"] != "s7-p100" {
		t.Errorf("filter %v", a)
	}
	b := attrs["cpix:CPIX/cpix:ContentKeyUsageRuleList/cpix:ContentKeyUsageRule/emb:Bundle"]
	if b["stream"] != "7" || b["period"] != "100" || b["releaseAt"] != "1800000000000000000" || b["presentAt"] != "1800000002000000000" {
		t.Errorf("bundle attributes %v", b)
	}
}

func short(n xml.Name) string {
	prefix := map[string]string{nsCPIX: "cpix", nsDS: "ds", nsEnc: "enc", nsPSKC: "pskc", Namespace: "emb"}[n.Space]
	if prefix == "" {
		prefix = "?" + n.Space
	}
	return prefix + ":" + n.Local
}

// TestFreshDocumentKey: two documents of the same bundles share no key and
// no ciphertext.
func TestFreshDocumentKey(t *testing.T) {
	key, cert := recipients(t)
	in := testBundles(1)
	var keys [][]byte
	var docs []string
	for range 2 {
		doc, err := EncodeBundles(in, cert)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := newConfig(nil)
		x, err := parse(doc, c, c.elemLimit(perBundle))
		if err != nil {
			t.Fatal(err)
		}
		wrapped, err := encValue(x.Delivery.Data[0].DocKey.Data.Secret.Encrypted, algRSAOAEP, "")
		if err != nil {
			t.Fatal(err)
		}
		dk, err := unwrap(key, wrapped)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, dk)
		s, e := nth(t, string(doc), "enc:CipherValue", 2)
		docs = append(docs, string(doc)[s:e])
	}
	if bytes.Equal(keys[0], keys[1]) || docs[0] == docs[1] {
		t.Fatal("two documents share a Document Key or an RK ciphertext")
	}
}

func TestBundleKID(t *testing.T) {
	k := BundleKID(7, 100)
	if k[6]>>4 != 8 || k[8]>>6 != 2 {
		t.Errorf("kid %s: version %d variant %b", FormatUUID(k), k[6]>>4, k[8]>>6)
	}
	if k != BundleKID(7, 100) || k == BundleKID(7, 101) || k == BundleKID(8, 100) {
		t.Error("kid is not a function of exactly (stream, period)")
	}
	// Pinned: the origin and every edge must derive the same kid.
	if got, want := FormatUUID(BundleKID(7, 100)), pinnedKID; got != want {
		t.Errorf("BundleKID(7, 100) = %s, pinned %s", got, want)
	}
}

const pinnedKID = "46276375-04e9-874c-ab86-e9afe952dad7"

func TestUUID(t *testing.T) {
	k := BundleKID(1, 2)
	for _, s := range []string{FormatUUID(k), strings.ToUpper(FormatUUID(k))} {
		got, err := ParseUUID(s)
		if err != nil || got != k {
			t.Errorf("ParseUUID(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "0123", strings.ReplaceAll(FormatUUID(k), "-", "_"), FormatUUID(k)[:35] + "g"} {
		if _, err := ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) accepted", s)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	_, cert := recipients(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := selfSigned(t, "ec", ecKey, &ecKey.PublicKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Skipf("no 1024-bit RSA here: %v", err)
	}
	smallCert := selfSigned(t, "small", small, &small.PublicKey)

	mod := func(f func([]*bundle.Bundle) []*bundle.Bundle) []*bundle.Bundle { return f(testBundles(2)) }
	for _, tc := range []struct {
		name    string
		bundles []*bundle.Bundle
		cert    *x509.Certificate
		opts    []Option
		want    error
	}{
		{"none", nil, cert, nil, ErrInvalid},
		{"nil bundle", []*bundle.Bundle{nil}, cert, nil, ErrInvalid},
		{"twice", mod(func(b []*bundle.Bundle) []*bundle.Bundle { return append(b, b[0]) }), cert, nil, ErrInvalid},
		{"present before release", mod(func(b []*bundle.Bundle) []*bundle.Bundle { b[1].PresentAt = b[1].ReleaseAt - 1; return b }), cert, nil, ErrInvalid},
		{"negative release", mod(func(b []*bundle.Bundle) []*bundle.Bundle { b[1].ReleaseAt = -1; return b }), cert, nil, ErrInvalid},
		{"no shards", mod(func(b []*bundle.Bundle) []*bundle.Bundle { b[0].Shards = nil; return b }), cert, nil, ErrInvalid},
		{"empty shard", mod(func(b []*bundle.Bundle) []*bundle.Bundle { b[0].Shards[1] = nil; return b }), cert, nil, ErrInvalid},
		{"huge shard", mod(func(b []*bundle.Bundle) []*bundle.Bundle { b[0].Shards[1] = make([]byte, 9001); return b }), cert, nil, ErrInvalid},
		{"no cert", testBundles(1), nil, nil, ErrInvalid},
		{"ecdsa cert", testBundles(1), ecCert, nil, ErrUnsupported},
		{"1024-bit cert", testBundles(1), smallCert, nil, ErrUnsupported},
		{"bad option", testBundles(1), cert, []Option{WithMaxSize(0)}, ErrInvalid},
		{"bad scheme", testBundles(1), cert, []Option{WithScheme("ctr")}, ErrInvalid},
		{"bad offset", testBundles(1), cert, []Option{WithTAIOffset(-1)}, ErrInvalid},
		{"too many", testBundles(3), cert, []Option{WithMaxPeriods(2)}, ErrTooLarge},
		{"too big", testBundles(3), cert, []Option{WithMaxSize(4096)}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncodeBundles(tc.bundles, tc.cert, tc.opts...)
			wantOnly(t, err, tc.want)
		})
	}
	if _, err := EncodeBundles(testBundles(1), cert, WithTAIOffset(ptp.DefaultTAIOffset)); err != nil {
		t.Error(err)
	}
}

func TestEncodePackagerRefuses(t *testing.T) {
	_, cert := recipients(t)
	for _, tc := range []struct {
		name string
		f    func([]PeriodKeys) []PeriodKeys
	}{
		{"none", func([]PeriodKeys) []PeriodKeys { return nil }},
		{"no keys", func(p []PeriodKeys) []PeriodKeys { p[0].Keys = nil; return p }},
		{"3 keys: a content key context would have two", func(p []PeriodKeys) []PeriodKeys { return testPeriodKeys(1, 3) }},
		{"negative release", func(p []PeriodKeys) []PeriodKeys { p[0].ReleaseAt = -1; return p }},
		{"end before start", func(p []PeriodKeys) []PeriodKeys { p[1].End = p[1].Start - 1; return p }},
		{"negative start", func(p []PeriodKeys) []PeriodKeys { p[1].Start = -1; return p }},
		{"period twice", func(p []PeriodKeys) []PeriodKeys { p[1].Period = p[0].Period; return p }},
		{"kid twice", func(p []PeriodKeys) []PeriodKeys { p[1].Keys[0].KID = p[0].Keys[1].KID; return p }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncodePackagerKeys(tc.f(testPeriodKeys(2, 2)), cert)
			wantOnly(t, err, ErrInvalid)
		})
	}
}
