package keyserver_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/embargo-live/embargo/engine/cpix/cpixtest"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/internal/realtime"
)

// The SPEKE tests call the handler directly with the TLS state a verified
// client certificate leaves, in virtual time: stream 1's period p is
// released p·200 ms after the test starts, so the examples' index 11425
// is 38 minutes ahead, within keyserver.KIDHorizon.

func spekePost(h http.Handler, stream int, cert *x509.Certificate, version string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, fmt.Sprintf("https://origin.test/v1/streams/%d/speke", stream), bytes.NewReader(body))
	if cert != nil {
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
	}
	if version != "" {
		r.Header.Set("X-Speke-Version", version)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// example is a kept SPEKE request with the packager's certificate in it.
func example(t *testing.T, l *lab, name string) []byte {
	doc := cpixtest.SPEKERequests()[name]
	if doc == nil {
		t.Fatalf("no example %s", name)
	}
	return bytes.Replace(doc, []byte(">CERTIFICATE<"), []byte(">"+base64.StdEncoding.EncodeToString(l.pkg.Cert.Raw)+"<"), 1)
}

// spekeOrigin is an issuer with stream 1 (two keys per period, video and
// audio) and stream 2 (one key for all tracks), behind the handler.
func spekeOrigin(t *testing.T) (*keyserver.Issuer, http.Handler) {
	issuer := newIssuer(t, filepath.Join(t.TempDir(), "state"))
	_, master, _ := origin.Generate()
	s := issuer.Event(1).Schedule
	if err := issuer.AddEvent(&keystore.Event{Stream: 2, Master: master, Keys: 1, Schedule: s}); err != nil {
		t.Fatal(err)
	}
	return issuer, keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer})
}

// TestSPEKE: each example request is answered with valid CPIX whose keys,
// opened by an implementation independent of package cpix, are the keys
// the origin stored for those periods under the encryptor's KIDs, video
// then audio, with the W3C common PSSH asked for; asking twice gets the
// same keys.
func TestSPEKE(t *testing.T) {
	l := newLab(t)
	for _, c := range []struct {
		name, version string
		stream        int
		periods       [][]string // per period index 11425…, the KIDs by track
	}{
		{"live-2.0-clear.xml", "2.0", 1, [][]string{{"6c5f5206-7d98-4808-84d8-94f132c1e9fe", "1fc91d83-a8ea-4d04-9227-3ccfd6d7e4cb"}, {"8f2a9c4e-0b1d-4e7a-9d3c-5a6b7c8d9e0f", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}}},
		{"live-2.1-encrypted.xml", "2.1", 1, [][]string{{"98ee5596-cd3e-a20d-163a-e382420c6eff", "53abdba2-f210-43cb-bc90-f18f9a890a02"}}},
		{"live-2.0-shared.xml", "2.0", 2, [][]string{nil, nil, {"3e1d8c2a-5b4f-4c6d-8e7f-9a0b1c2d3e4f"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				issuer, h := spekeOrigin(t)
				var first map[string][]byte
				for try := range 2 {
					w := spekePost(h, c.stream, l.pkg.Cert, c.version, example(t, l, c.name))
					if w.Code != http.StatusOK {
						t.Fatalf("%d %s", w.Code, w.Body)
					}
					if w.Header().Get("X-Speke-Version") != c.version || w.Header().Get("Content-Type") != "application/xml" {
						t.Errorf("headers %v", w.Header())
					}
					cpixtest.Validate(t, w.Body.Bytes())
					keys, pssh := openAnswer(t, w.Body.Bytes(), l.pkg.Key)
					if try == 1 && !maps.EqualFunc(first, keys, bytes.Equal) {
						t.Fatal("asked twice, answered different keys")
					}
					first = keys
					for kid, box := range pssh {
						if want := commonPSSH(t, kid); !bytes.Equal(box, want) {
							t.Errorf("PSSH of %s is %x, want %x", kid, box, want)
						}
					}
				}
				for i, kids := range c.periods {
					if kids == nil {
						continue
					}
					p, err := issuer.Period(uint32(c.stream), 11425+uint64(i))
					if err != nil {
						t.Fatal(err)
					}
					for j, kid := range kids {
						if hexKID(p.Keys[j].KID) != kid || !bytes.Equal(first[kid], p.Keys[j].Key[:]) {
							t.Errorf("period %d track %d: stored %x, answered %s=%x", 11425+i, j, p.Keys[j], kid, first[kid])
						}
					}
				}
			})
		})
	}
}

// TestSPEKERefusals: every way to get a second key for a period, or keys
// the origin cannot stand behind, is refused with its reason, and leaves
// the stored period as it was.
func TestSPEKERefusals(t *testing.T) {
	l := newLab(t)
	synctest.Test(t, func(t *testing.T) {
		issuer, h := spekeOrigin(t)
		clear := example(t, l, "live-2.0-clear.xml")
		if w := spekePost(h, 1, l.pkg.Cert, "2.0", clear); w.Code != http.StatusOK {
			t.Fatalf("first request: %d %s", w.Code, w.Body)
		}
		before, err := issuer.Period(1, 11425)
		if err != nil {
			t.Fatal(err)
		}
		// Period 2 is within the lead: the origin issued it with its own KIDs.
		if _, err := issuer.Period(1, 2); err != nil {
			t.Fatal(err)
		}
		index := func(doc []byte, from, to string) []byte {
			return bytes.ReplaceAll(doc, []byte(`index="`+from+`"`), []byte(`index="`+to+`"`))
		}
		for _, c := range []struct {
			name    string
			stream  int
			cert    *x509.Certificate
			version string
			body    []byte
			code    int
			reason  string
		}{
			{"other KIDs for an issued period", 1, l.pkg.Cert, "2.1", example(t, l, "live-2.1-encrypted.xml"), 409, "issued with KID"},
			{"a period the origin issued itself", 1, l.pkg.Cert, "2.0", index(index(clear, "11425", "2"), "11426", "3"), 409, "issued with KID"},
			{"a period released without being issued", 1, l.pkg.Cert, "2.0", index(index(clear, "11425", "0"), "11426", "99"), 410, "release has passed"},
			{"too far ahead", 1, l.pkg.Cert, "2.0", index(index(clear, "11425", "100000"), "11426", "100001"), 422, "beyond 1h0m0s"},
			{"one key for a stream with two", 1, l.pkg.Cert, "2.0", example(t, l, "live-2.0-shared.xml"), 409, "stream 1 has 2 per period"},
			{"two keys for a stream with one", 2, l.pkg.Cert, "2.0", index(index(clear, "11425", "11500"), "11426", "11501"), 409, "stream 2 has 1 per period"},
			{"no SPEKE version", 1, l.pkg.Cert, "", clear, 400, "Unsupported SPEKE version"},
			{"CPIX version of another SPEKE version", 1, l.pkg.Cert, "2.1", clear, 400, "requires 2.4"},
			{"an edge's certificate", 1, l.edge.Cert, "2.0", clear, 403, "role"},
			{"no certificate", 1, nil, "2.0", clear, 403, "client certificate"},
			{"unknown stream", 9, l.pkg.Cert, "2.0", clear, 404, "stream 9"},
			{"not CPIX", 1, l.pkg.Cert, "2.0", []byte("{}"), 400, "malformed"},
			{"oversized", 1, l.pkg.Cert, "2.0", bytes.Repeat([]byte(" "), 2<<20), 413, "over"},
		} {
			w := spekePost(h, c.stream, c.cert, c.version, c.body)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.reason) {
				t.Errorf("%s: %d %q, want %d and %q", c.name, w.Code, strings.TrimSpace(w.Body.String()), c.code, c.reason)
			}
		}
		after, err := issuer.Period(1, 11425)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(before.Keys, after.Keys) {
			t.Error("a refused request changed period 11425's keys")
		}
	})
}

// commonPSSH is the W3C common 'pssh' box (ISO/IEC 23001-7, version 1)
// naming kid, built here byte by byte.
func commonPSSH(t *testing.T, kid string) []byte {
	k, err := hex.DecodeString(strings.ReplaceAll(kid, "-", ""))
	if err != nil {
		t.Fatal(err)
	}
	sys, _ := hex.DecodeString("1077efecc0b24d02ace33c1e52e2fb4b")
	box := append([]byte{0, 0, 0, 52, 'p', 's', 's', 'h', 1, 0, 0, 0}, sys...)
	box = append(box, 0, 0, 0, 1)
	box = append(box, k...)
	return append(box, 0, 0, 0, 0)
}

// openAnswer reads a SPEKE answer with encoding/xml and the crypto
// packages alone: RSA-OAEP(SHA-1) unwraps the document and MAC keys,
// HMAC-SHA512 checks each value, AES-256-CBC decrypts it. Values in the
// clear are taken as they are. It returns each key and each DRMSystem's
// PSSH box by lower-case KID.
func openAnswer(t *testing.T, doc []byte, priv *rsa.PrivateKey) (map[string][]byte, map[string][]byte) {
	t.Helper()
	type enc struct {
		Cipher string `xml:"CipherData>CipherValue"`
	}
	var x struct {
		DocKey *enc `xml:"DeliveryDataList>DeliveryData>DocumentKey>Data>Secret>EncryptedValue"`
		MACKey *enc `xml:"DeliveryDataList>DeliveryData>MACMethod>MACKey"`
		Keys   []struct {
			KID   string `xml:"kid,attr"`
			Plain string `xml:"Data>Secret>PlainValue"`
			Enc   enc    `xml:"Data>Secret>EncryptedValue"`
			MAC   string `xml:"Data>Secret>ValueMAC"`
		} `xml:"ContentKeyList>ContentKey"`
		Systems []struct {
			KID  string `xml:"kid,attr"`
			PSSH string `xml:"PSSH"`
		} `xml:"DRMSystemList>DRMSystem"`
	}
	if err := xml.Unmarshal(doc, &x); err != nil {
		t.Fatal(err)
	}
	unb64 := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var block cipher.Block
	var macKey []byte
	if x.DocKey != nil {
		docKey, err := rsa.DecryptOAEP(sha1.New(), nil, priv, unb64(x.DocKey.Cipher), nil)
		if err != nil {
			t.Fatal(err)
		}
		if macKey, err = rsa.DecryptOAEP(sha1.New(), nil, priv, unb64(x.MACKey.Cipher), nil); err != nil {
			t.Fatal(err)
		}
		if block, err = aes.NewCipher(docKey); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string][]byte{}
	for _, k := range x.Keys {
		if block == nil {
			out[k.KID] = unb64(k.Plain)
			continue
		}
		ct := unb64(k.Enc.Cipher)
		m := hmac.New(sha512.New, macKey)
		m.Write(ct)
		if !hmac.Equal(m.Sum(nil), unb64(k.MAC)) {
			t.Fatalf("ValueMAC of %s", k.KID)
		}
		pt := make([]byte, len(ct)-aes.BlockSize)
		cipher.NewCBCDecrypter(block, ct[:aes.BlockSize]).CryptBlocks(pt, ct[aes.BlockSize:])
		out[k.KID] = pt[:len(pt)-int(pt[len(pt)-1])]
	}
	pssh := map[string][]byte{}
	for _, sys := range x.Systems {
		if sys.PSSH != "" {
			pssh[sys.KID] = unb64(sys.PSSH)
		}
	}
	return out, pssh
}

func hexKID(b [16]byte) string {
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// TestSPEKEOverMutualTLS: the SPEKE endpoint answers a packager's
// certificate over real HTTPS, and the TLS layer's answer to an edge's
// certificate is the same refusal as in memory.
func TestSPEKEOverMutualTLS(t *testing.T) {
	realtime.Exclusive(t)
	l := newLab(t)
	o := newOrigin(t, l)
	for _, c := range []struct {
		cert *pki.Cert
		want int
	}{{l.pkg, http.StatusOK}, {l.edge, http.StatusForbidden}, {nil, http.StatusForbidden}} {
		req, _ := http.NewRequest(http.MethodPost, o.srv.URL+"/v1/streams/1/speke", bytes.NewReader(example(t, l, "live-2.1-encrypted.xml")))
		req.Header.Set("X-Speke-Version", "2.1")
		resp, err := l.client(c.cert).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, body)
		}
		if c.want == http.StatusOK {
			cpixtest.Validate(t, body)
			if keys, _ := openAnswer(t, body, l.pkg.Key); len(keys["98ee5596-cd3e-a20d-163a-e382420c6eff"]) != 16 {
				t.Fatalf("answer keys %x", keys)
			}
		}
	}
}
