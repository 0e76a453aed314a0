package clearkey_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/seal"
)

// FuzzParseRequest: any body either fails or yields a request that
// re-marshals to a body that parses to the same request, and whose key ids
// spell exactly as they came in.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"kids":["LwVHf8JLtPrv2GUXFW2v_A","0DdtU9od-Bh5L3xbv0Xf_A"],"type":"temporary"}`))
	f.Add([]byte(`{"kids":["LwVHf8JLtPrv2GUXFW2v_A"]}`))
	f.Add([]byte(`{"kids":["LwVHf8JLtPrv2GUXFW2v_A"],"type":"persistent-license"}`))
	f.Add([]byte(`{"kids":["LwVHf8JLtPrv2GUXFW2v_B"],"type":null,"x":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := clearkey.ParseRequest(body)
		if err != nil {
			return
		}
		if req.Type != clearkey.TypeTemporary || len(req.KIDs) == 0 || len(req.KIDs) > clearkey.MaxKIDs {
			t.Fatalf("accepted %+v", req)
		}
		out, err := clearkey.MarshalRequest(req.KIDs, req.Type)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		back, err := clearkey.ParseRequest(out)
		if err != nil || back.Type != req.Type || !slices.Equal(back.KIDs, req.KIDs) {
			t.Fatalf("round trip %s: %+v, %v", out, back, err)
		}
		again, _ := clearkey.MarshalRequest(back.KIDs, back.Type)
		if !bytes.Equal(again, out) {
			t.Fatalf("unstable encoding %s vs %s", out, again)
		}
	})
}

// FuzzParseLicence: any body either fails or yields keys whose licence
// parses back to the same keys.
func FuzzParseLicence(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"tQ0bJVWb6b0KPL6KtZIy_A","kid":"LwVHf8JLtPrv2GUXFW2v_A"}],"type":"temporary"}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"tQ0bJVWb6b0KPL6KtZIy_A","kid":"LwVHf8JLtPrv2GUXFW2v_A","alg":"A128KW"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","k":"","kid":""}],"type":"persistent-license"}`))
	master, _ := clearkey.MarshalMasterLicence(bytes.Repeat([]byte{1}, seal.MasterKeyLen))
	f.Add(master)
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := clearkey.ParseLicence(body)
		if err != nil {
			return
		}
		out, err := clearkey.MarshalLicence(keys, "")
		if err != nil {
			t.Fatalf("re-marshal %d keys: %v", len(keys), err)
		}
		back, err := clearkey.ParseLicence(out)
		if err != nil || !slices.Equal(back, keys) {
			t.Fatalf("round trip %s: %v", out, err)
		}
	})
}

// FuzzParseMasterLicence: a master key is only ever returned with its own
// key id, and round-trips.
func FuzzParseMasterLicence(f *testing.F) {
	good, _ := clearkey.MarshalMasterLicence(bytes.Repeat([]byte{0x5a}, seal.MasterKeyLen))
	f.Add(good)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"tQ0bJVWb6b0KPL6KtZIy_A","kid":"LwVHf8JLtPrv2GUXFW2v_A"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		master, err := clearkey.ParseMasterLicence(body)
		if err != nil {
			return
		}
		out, err := clearkey.MarshalMasterLicence(master)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		back, err := clearkey.ParseMasterLicence(out)
		if err != nil || !bytes.Equal(back, master) {
			t.Fatalf("round trip %s: %v", out, err)
		}
	})
}
