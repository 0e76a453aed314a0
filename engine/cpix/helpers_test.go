package cpix

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/seal"
)

// Two recipients, made once per test binary: RSA key generation is the
// slowest thing these tests do.
var (
	recipOnce         sync.Once
	edgeKey, otherKey *rsa.PrivateKey
	edgeCert          *x509.Certificate
)

var sentinels = []error{ErrMalformed, ErrUnsupported, ErrMAC, ErrRecipient, ErrTooLarge, ErrInvalid}

const (
	testReleaseAt        = int64(1_800_000_000_000_000_000)
	testPeriodLen        = int64(2_000_000_000)
	testStream    uint32 = 7
)

func recipients(t testing.TB) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	recipOnce.Do(func() {
		edgeKey, edgeCert = newRecipient(t, "edge-1")
		otherKey, _ = newRecipient(t, "edge-2")
	})
	return edgeKey, edgeCert
}

func newRecipient(t testing.TB, name string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, selfSigned(t, name, key, &key.PublicKey)
}

func selfSigned(t testing.TB, name string, signer any, pub any) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Unix(1_700_000_000, 0),
		NotAfter:     time.Unix(2_000_000_000, 0),
		KeyUsage:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// testBundles makes n bundles of consecutive periods. Their shards are
// random bytes, not ANNOUNCE datagrams: this package carries them opaquely.
func testBundles(n int) []*bundle.Bundle {
	out := make([]*bundle.Bundle, n)
	for i := range out {
		b := &bundle.Bundle{
			Stream:    testStream,
			Period:    100 + uint64(i),
			ReleaseAt: testReleaseAt + int64(i)*testPeriodLen,
			PresentAt: testReleaseAt + int64(i+1)*testPeriodLen,
		}
		rand.Read(b.RK[:])
		for j := range 3 {
			s := make([]byte, 200+j)
			rand.Read(s)
			b.Shards = append(b.Shards, s)
		}
		out[i] = b
	}
	return out
}

func testPeriodKeys(n, perPeriod int) []PeriodKeys {
	out := make([]PeriodKeys, n)
	for i := range out {
		pk := PeriodKeys{
			Stream: testStream,
			Period: 100 + uint64(i),
			Start:  testReleaseAt + int64(i)*testPeriodLen + 123,
			End:    testReleaseAt + int64(i+1)*testPeriodLen + 123,
			// Released 2 s before its media starts, to the nanosecond.
			ReleaseAt: testReleaseAt + int64(i)*testPeriodLen - 1_999_999_877,
		}
		for range perPeriod {
			var k seal.ContentKey
			rand.Read(k.KID[:])
			rand.Read(k.Key[:])
			pk.Keys = append(pk.Keys, k)
		}
		out[i] = pk
	}
	return out
}

// wantOnly requires err to wrap want and no other sentinel, so that each
// refusal is told apart from the others.
func wantOnly(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v also wraps %v", err, s)
		}
	}
}

// oneSentinel requires err to wrap exactly one of the package's sentinels.
func oneSentinel(t testing.TB, err error) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v wraps %d sentinels", err, n)
	}
}

// nth finds the text of the n-th (from 0) element written as <open>…</close>
// and returns its bounds.
func nth(t testing.TB, doc, tag string, n int) (int, int) {
	t.Helper()
	open, closing := "<"+tag+">", "</"+tag+">"
	at := 0
	for i := 0; ; i++ {
		j := strings.Index(doc[at:], open)
		if j < 0 {
			t.Fatalf("no %s #%d", tag, n)
		}
		start := at + j + len(open)
		end := start + strings.Index(doc[start:], closing)
		if i == n {
			return start, end
		}
		at = end
	}
}

// editB64 decodes the n-th <tag> element's base64 text, edits it and puts
// it back.
func editB64(t testing.TB, doc, tag string, n int, f func([]byte) []byte) string {
	t.Helper()
	start, end := nth(t, doc, tag, n)
	raw, err := unb64(doc[start:end], tag)
	if err != nil {
		t.Fatal(err)
	}
	return doc[:start] + b64(f(raw)) + doc[end:]
}

func flip(b []byte) []byte {
	b[len(b)/2] ^= 0x01
	return b
}
