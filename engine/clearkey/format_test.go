package clearkey_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/seal"
)

// The values of the examples in EME §9.1.3.1 and §9.1.4.1.
const (
	specKID1 = "LwVHf8JLtPrv2GUXFW2v_A"
	specKID2 = "0DdtU9od-Bh5L3xbv0Xf_A"
	specKey  = "tQ0bJVWb6b0KPL6KtZIy_A"
)

func id16(t testing.TB, s string) [16]byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("decode %q: %v (%d bytes)", s, err, len(b))
	}
	return [16]byte(b)
}

func randomKeys(t testing.TB, n int) []seal.ContentKey {
	t.Helper()
	keys := make([]seal.ContentKey, n)
	for i := range keys {
		rand.Read(keys[i].KID[:])
		rand.Read(keys[i].Key[:])
	}
	return keys
}

// TestSpecLicenceExample builds the licence of EME §9.1.4.1 (Example 2)
// from its key and key id and expects the example's bytes with its
// readability line breaks removed. The specification writes the last
// member name as 'type', which is not JSON; the double-quoted form is
// what its prose and every browser use.
func TestSpecLicenceExample(t *testing.T) {
	keys := []seal.ContentKey{{KID: id16(t, specKID1), Key: id16(t, specKey)}}
	got, err := clearkey.MarshalLicence(keys, clearkey.TypeTemporary)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"keys":[{"kty":"oct","k":"tQ0bJVWb6b0KPL6KtZIy_A","kid":"LwVHf8JLtPrv2GUXFW2v_A"}],"type":"temporary"}`
	if string(got) != want {
		t.Fatalf("licence\n got %s\nwant %s", got, want)
	}
	pretty := `{
  "keys":
    [{
      "kty":"oct",
      "k":"tQ0bJVWb6b0KPL6KtZIy_A",
      "kid":"LwVHf8JLtPrv2GUXFW2v_A"
    }],
  "type":"temporary"
}`
	back, err := clearkey.ParseLicence([]byte(pretty))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, keys) {
		t.Fatalf("parsed %x, want %x", back, keys)
	}
}

// TestSpecRequestExample is EME §9.1.3.1 (Example 1) both ways.
func TestSpecRequestExample(t *testing.T) {
	kids := [][16]byte{id16(t, specKID1), id16(t, specKID2)}
	got, err := clearkey.MarshalRequest(kids, "")
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"kids":["LwVHf8JLtPrv2GUXFW2v_A","0DdtU9od-Bh5L3xbv0Xf_A"],"type":"temporary"}`
	if string(got) != want {
		t.Fatalf("request\n got %s\nwant %s", got, want)
	}
	pretty := `{
  "kids":
    [
     "LwVHf8JLtPrv2GUXFW2v_A",
     "0DdtU9od-Bh5L3xbv0Xf_A"
    ],
  "type":"temporary"
}`
	req, err := clearkey.ParseRequest([]byte(pretty))
	if err != nil {
		t.Fatal(err)
	}
	if req.Type != clearkey.TypeTemporary || !slices.Equal(req.KIDs, kids) {
		t.Fatalf("parsed %+v", req)
	}
}

func TestParseRequestAccepts(t *testing.T) {
	for name, body := range map[string]string{
		"no type":        `{"kids":["` + specKID1 + `"]}`,
		"unknown member": `{"kids":["` + specKID1 + `"],"type":"temporary","x":{"y":[1,2]}}`,
		"max kids":       `{"kids":[` + strings.Repeat(`"`+specKID1+`",`, clearkey.MaxKIDs-1) + `"` + specKID2 + `"]}`,
	} {
		if _, err := clearkey.ParseRequest([]byte(body)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseRequestRejects(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       error
	}{
		{"not json", `{"kids":`, clearkey.ErrMalformed},
		{"not an object", `["` + specKID1 + `"]`, clearkey.ErrMalformed},
		{"null", `null`, clearkey.ErrMalformed},
		{"trailing data", `{"kids":["` + specKID1 + `"]} x`, clearkey.ErrMalformed},
		{"no kids", `{"type":"temporary"}`, clearkey.ErrMalformed},
		{"member name case", `{"KIDS":["` + specKID1 + `"]}`, clearkey.ErrMalformed},
		{"null kids", `{"kids":null}`, clearkey.ErrMalformed},
		{"empty kids", `{"kids":[]}`, clearkey.ErrMalformed},
		{"kids not strings", `{"kids":[1]}`, clearkey.ErrMalformed},
		{"too many", `{"kids":[` + strings.Repeat(`"`+specKID1+`",`, clearkey.MaxKIDs) + `"` + specKID2 + `"]}`, clearkey.ErrTooMany},
		{"padded", `{"kids":["` + specKID1 + `=="]}`, clearkey.ErrKID},
		{"standard alphabet", `{"kids":["0DdtU9od+Bh5L3xbv0Xf/A"]}`, clearkey.ErrKID},
		{"non-canonical", `{"kids":["LwVHf8JLtPrv2GUXFW2v_B"]}`, clearkey.ErrKID},
		{"15 bytes", `{"kids":["LwVHf8JLtPrv2GUXFW2v"]}`, clearkey.ErrKID},
		{"17 bytes", `{"kids":["LwVHf8JLtPrv2GUXFW2v_AA"]}`, clearkey.ErrKID},
		{"newline inside", `{"kids":["LwVHf8JLtPrv2GUXFW2v\n"]}`, clearkey.ErrKID},
		{"null kid", `{"kids":[null]}`, clearkey.ErrKID},
		{"persistent", `{"kids":["` + specKID1 + `"],"type":"persistent-license"}`, clearkey.ErrUnsupported},
		{"usage record", `{"kids":["` + specKID1 + `"],"type":"persistent-usage-record"}`, clearkey.ErrUnsupported},
		{"unknown type", `{"kids":["` + specKID1 + `"],"type":"forever"}`, clearkey.ErrMalformed},
		{"null type", `{"kids":["` + specKID1 + `"],"type":null}`, clearkey.ErrMalformed},
		{"oversized", `{"kids":["` + specKID1 + `"],"pad":"` + strings.Repeat("x", clearkey.MaxBodySize) + `"}`, clearkey.ErrTooLarge},
	} {
		if _, err := clearkey.ParseRequest([]byte(c.body)); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestLicenceRoundTrip(t *testing.T) {
	for _, n := range []int{1, 3, clearkey.MaxKIDs} {
		keys := randomKeys(t, n)
		lic, err := clearkey.MarshalLicence(keys, "")
		if err != nil {
			t.Fatal(err)
		}
		back, err := clearkey.ParseLicence(lic)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(back, keys) {
			t.Fatalf("%d keys: round trip differs", n)
		}
	}
	if _, err := clearkey.MarshalLicence(nil, ""); !errors.Is(err, clearkey.ErrMalformed) {
		t.Errorf("no keys: %v", err)
	}
	if _, err := clearkey.MarshalLicence(randomKeys(t, clearkey.MaxKIDs+1), ""); !errors.Is(err, clearkey.ErrTooMany) {
		t.Errorf("too many keys: %v", err)
	}
	if _, err := clearkey.MarshalLicence(randomKeys(t, 1), clearkey.TypePersistentLicense); !errors.Is(err, clearkey.ErrUnsupported) {
		t.Errorf("persistent: %v", err)
	}
}

func TestParseLicenceRejects(t *testing.T) {
	key := func(kty, k, kid string) string {
		return fmt.Sprintf(`{"keys":[{"kty":%q,"k":%q,"kid":%q}]}`, kty, k, kid)
	}
	for _, c := range []struct {
		name, body string
		want       error
	}{
		{"no keys member", `{"type":"temporary"}`, clearkey.ErrMalformed},
		{"empty keys", `{"keys":[]}`, clearkey.ErrMalformed},
		{"key not object", `{"keys":["x"]}`, clearkey.ErrMalformed},
		{"no k", `{"keys":[{"kty":"oct","kid":"` + specKID1 + `"}]}`, clearkey.ErrMalformed},
		{"no kid", `{"keys":[{"kty":"oct","k":"` + specKey + `"}]}`, clearkey.ErrMalformed},
		{"RSA", key("RSA", specKey, specKID1), clearkey.ErrKey},
		{"32-byte key", key("oct", strings.Repeat("A", 43), specKID1), clearkey.ErrKey},
		{"padded key", key("oct", specKey+"==", specKID1), clearkey.ErrKey},
		{"bad kid", key("oct", specKey, "abc"), clearkey.ErrKID},
		{"persistent", `{"keys":[{"kty":"oct","k":"` + specKey + `","kid":"` + specKID1 + `"}],"type":"persistent-license"}`, clearkey.ErrUnsupported},
	} {
		if _, err := clearkey.ParseLicence([]byte(c.body)); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMasterLicence(t *testing.T) {
	master := bytes.Repeat([]byte{0xa5}, seal.MasterKeyLen)
	lic, err := clearkey.MarshalMasterLicence(master)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append([]byte("embargo/v1 master kid"), master...))
	enc := base64.RawURLEncoding.EncodeToString
	want := `{"keys":[{"kty":"oct","k":"` + enc(master) + `","kid":"` + enc(sum[:16]) + `"}],"type":"temporary"}`
	if string(lic) != want {
		t.Fatalf("master licence\n got %s\nwant %s", lic, want)
	}
	back, err := clearkey.ParseMasterLicence(lic)
	if err != nil || !bytes.Equal(back, master) {
		t.Fatalf("parse: %x, %v", back, err)
	}
	// A content-key licence is not a master licence, nor is a master key
	// under another key's id.
	content, _ := clearkey.MarshalLicence(randomKeys(t, 1), "")
	if _, err := clearkey.ParseMasterLicence(content); !errors.Is(err, clearkey.ErrKey) {
		t.Errorf("content licence: %v", err)
	}
	forged := strings.Replace(string(lic), enc(sum[:16]), specKID1, 1)
	if _, err := clearkey.ParseMasterLicence([]byte(forged)); !errors.Is(err, clearkey.ErrKID) {
		t.Errorf("wrong kid: %v", err)
	}
	if _, err := clearkey.MarshalMasterLicence(master[:16]); !errors.Is(err, clearkey.ErrKey) {
		t.Errorf("short master: %v", err)
	}
}

func ExampleMarshalLicence() {
	kid, _ := base64.RawURLEncoding.DecodeString("LwVHf8JLtPrv2GUXFW2v_A")
	key, _ := base64.RawURLEncoding.DecodeString("tQ0bJVWb6b0KPL6KtZIy_A")
	lic, _ := clearkey.MarshalLicence([]seal.ContentKey{{KID: [16]byte(kid), Key: [16]byte(key)}}, clearkey.TypeTemporary)
	fmt.Println(string(lic))
	// Output:
	// {"keys":[{"kty":"oct","k":"tQ0bJVWb6b0KPL6KtZIy_A","kid":"LwVHf8JLtPrv2GUXFW2v_A"}],"type":"temporary"}
}
