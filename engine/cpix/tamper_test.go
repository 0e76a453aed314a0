package cpix

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// Element indices in an encoded document: CipherValue 0 is the wrapped
// Document Key, 1 the wrapped MAC key, 2… the content keys in order;
// pskc:Secret 0 is the Document Key's, 1… the content keys'.
const (
	cvDocKey = 0
	cvMACKey = 1
	cvRK0    = 2
)

func TestDecodeBundlesRefuses(t *testing.T) {
	key, cert := recipients(t)
	doc, err := EncodeBundles(testBundles(3), cert)
	if err != nil {
		t.Fatal(err)
	}
	d := string(doc)
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("document lacks %q", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	b64edit := func(tag string, n int, f func([]byte) []byte) func(string) string {
		return func(s string) string { return editB64(t, s, tag, n, f) }
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		opts []Option
		want error
	}{
		{"RK ciphertext", b64edit("enc:CipherValue", cvRK0+1, flip), nil, ErrMAC},
		{"ValueMAC", b64edit("pskc:ValueMAC", 0, flip), nil, ErrMAC},
		{"wrapped Document Key", b64edit("enc:CipherValue", cvDocKey, flip), nil, ErrMAC},
		{"wrapped MAC key", b64edit("enc:CipherValue", cvMACKey, flip), nil, ErrMAC},
		{"ANNOUNCE datagram", b64edit("emb:Announce", 4, flip), nil, ErrMAC},
		{"ANNOUNCE datagram cut", b64edit("emb:Announce", 0, func(b []byte) []byte { return b[:len(b)-1] }), nil, ErrMAC},
		{"bundle MAC", b64edit("emb:MAC", 1, flip), nil, ErrMAC},
		{"releaseAt", replace(`releaseAt="1800000000000000000"`, `releaseAt="1799999999000000000"`), nil, ErrMAC},
		{"datagram dropped", func(s string) string {
			i, j := nth(t, s, "emb:Announce", 0)
			return s[:i-len("<emb:Announce>")] + s[j+len("</emb:Announce>"):]
		}, nil, ErrMAC},
		{"RKs swapped between periods", func(s string) string {
			a0, a1 := nth(t, s, "pskc:Secret", 1)
			b0, b1 := nth(t, s, "pskc:Secret", 2)
			return s[:a0] + s[b0:b1] + s[a1:b0] + s[a0:a1] + s[b1:]
		}, nil, ErrMAC},
		{"RK algorithm", replace(`<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>`, `<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>`), nil, ErrUnsupported},
		{"MAC algorithm", replace("xmldsig-more#hmac-sha512", "xmldsig-more#hmac-sha256"), nil, ErrUnsupported},
		{"key transport algorithm", replace("xmlenc#rsa-oaep-mgf1p", "xmlenc#rsa-1_5"), nil, ErrUnsupported},
		{"OAEP digest", replace(`rsa-oaep-mgf1p"/>`, `rsa-oaep-mgf1p"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/></enc:EncryptionMethod>`), nil, ErrUnsupported},
		{"DocumentKey algorithm", replace(`<DocumentKey>`, `<DocumentKey Algorithm="http://www.w3.org/2001/04/xmlenc#tripledes-cbc">`), nil, ErrUnsupported},
		{"truncated", func(s string) string { return s[:len(s)/2] }, nil, ErrMalformed},
		{"not XML", func(string) string { return "CPIX" }, nil, ErrMalformed},
		{"empty", func(string) string { return "" }, nil, ErrMalformed},
		{"DOCTYPE", replace("?>\n", "?>\n<!DOCTYPE CPIX [<!ENTITY x \"y\">]>\n"), nil, ErrMalformed},
		{"second root", func(s string) string { return s + "<CPIX/>" }, nil, ErrMalformed},
		{"undefined entity", replace(`version="2.4"`, `version="&x;"`), nil, ErrMalformed},
		{"other namespace", replace(`xmlns="urn:dashif:org:cpix"`, `xmlns="urn:example:cpix"`), nil, ErrMalformed},
		{"RK in the clear", func(s string) string {
			i, j := nth(t, s, "pskc:Secret", 1)
			return s[:i] + "<pskc:PlainValue>AAAA</pskc:PlainValue>" + s[j:]
		}, nil, ErrMalformed},
		{"no MACMethod", func(s string) string {
			i := strings.Index(s, "<MACMethod")
			j := strings.Index(s, "</MACMethod>") + len("</MACMethod>")
			return s[:i] + s[j:]
		}, nil, ErrMalformed},
		{"second key for a period", replace(`<KeyPeriodFilter periodId="s7-p101"/>`, `<KeyPeriodFilter periodId="s7-p100"/>`), nil, ErrMalformed},
		{"no ValueMAC", regexpReplace(`<pskc:ValueMAC>[^<]*</pskc:ValueMAC>`, ""), nil, ErrMalformed},
		{"kid renamed", replace(`ContentKey kid="`+FormatUUID(BundleKID(testStream, 100))+`"`, `ContentKey kid="`+FormatUUID(BundleKID(testStream, 999))+`"`), nil, ErrMalformed},
		{"period id", replace(`periodId="s7-p101"`, `periodId="s7-p100"`), nil, ErrMalformed},
		{"stream number", replace(`stream="7" period="100"`, `stream="07" period="100"`), nil, ErrMalformed},
		{"present before release", replace(`presentAt="1800000002000000000"`, `presentAt="1799999999999999999"`), nil, ErrMalformed},
		{"bad base64", replace("<emb:MAC>", "<emb:MAC>!"), nil, ErrMalformed},
		{"no DeliveryData", regexpReplace(`(?s)<DeliveryDataList>.*</DeliveryDataList>`, ""), nil, ErrMalformed},
		{"certificate", b64edit("ds:X509Certificate", 0, func(b []byte) []byte { return b[:20] }), nil, ErrMalformed},
		{"oversized", nil, []Option{WithMaxSize(len(doc) - 1)}, ErrTooLarge},
		{"too many periods", nil, []Option{WithMaxPeriods(2)}, ErrTooLarge},
		{"too deep", replace("<DeliveryDataList>", "<DeliveryDataList>"+strings.Repeat("<x>", 40)+strings.Repeat("</x>", 40)), nil, ErrTooLarge},
		{"too many elements", replace("<DeliveryDataList>", "<DeliveryDataList>"+strings.Repeat("<x/>", 2000)), []Option{WithMaxPeriods(3)}, ErrTooLarge},
		{"bad option", nil, []Option{WithMaxPeriods(-1)}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := d
			if tc.edit != nil {
				in = tc.edit(d)
			}
			got, err := DecodeBundles([]byte(in), key, tc.opts...)
			if got != nil {
				t.Errorf("returned %d bundles with the error", len(got))
			}
			wantOnly(t, err, tc.want)
			t.Log(err)
		})
	}
	t.Run("other recipient", func(t *testing.T) {
		_, err := DecodeBundles(doc, otherKey)
		wantOnly(t, err, ErrRecipient)
	})
	t.Run("no key", func(t *testing.T) {
		_, err := DecodeBundles(doc, nil)
		wantOnly(t, err, ErrInvalid)
	})
}

func regexpReplace(expr, with string) func(string) string {
	re := regexp.MustCompile(expr)
	return func(s string) string { return re.ReplaceAllString(s, with) }
}

// TestDecodeOtherSpellings: the decoder reads CPIX as other producers
// write it: the cpix: prefix instead of a default namespace, no
// indentation, the MAC key inside a pskc:EncryptedValue (SPEKE's
// reference server) or as xmlenc children of cpix:Key (the DASH-IF test
// vectors), DocumentKey@Algorithm (CPIX 2.3), upper-case UUIDs, and DRM
// systems' signaling.
func TestDecodeOtherSpellings(t *testing.T) {
	key, cert := recipients(t)
	in := testBundles(2)
	doc, err := EncodeBundles(in, cert)
	if err != nil {
		t.Fatal(err)
	}
	prefixed := regexp.MustCompile(`<(/?)([A-Z][A-Za-z]*)`).ReplaceAllString(string(doc), "<${1}cpix:$2")
	prefixed = strings.Replace(prefixed, `xmlns="urn:dashif:org:cpix"`, `xmlns:cpix="urn:dashif:org:cpix"`, 1)
	compact := regexp.MustCompile(`>\s+<`).ReplaceAllString(string(doc), "><")
	macStart := strings.Index(string(doc), "<pskc:MACKey>") + len("<pskc:MACKey>")
	macEnd := strings.Index(string(doc), "</pskc:MACKey>")
	mac := string(doc)[macStart:macEnd]
	head, tail := string(doc)[:macStart-len("<pskc:MACKey>")], string(doc)[macEnd+len("</pskc:MACKey>"):]
	speke := head + "<Key><pskc:EncryptedValue>" + mac + "</pskc:EncryptedValue></Key>" + tail
	vectors := head + "<Key>" + mac + "</Key>" + tail
	cpix23 := strings.Replace(string(doc), "<DocumentKey>", `<DocumentKey Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc">`, 1)
	upper := strings.ReplaceAll(string(doc), FormatUUID(BundleKID(testStream, 100)), strings.ToUpper(FormatUUID(BundleKID(testStream, 100))))
	widevine := strings.Replace(string(doc), "<ContentKeyPeriodList>", `<DRMSystemList><DRMSystem systemId="edef8ba9-79d6-4ace-a3c8-27dcd51d21ed" kid="`+FormatUUID(BundleKID(testStream, 100))+`"><PSSH>AAAA</PSSH></DRMSystem></DRMSystemList><ContentKeyPeriodList>`, 1)
	for name, s := range map[string]string{"prefixed": prefixed, "compact": compact, "speke": speke, "vectors": vectors, "cpix23": cpix23, "upper": upper, "widevine": widevine} {
		t.Run(name, func(t *testing.T) {
			out, err := DecodeBundles([]byte(s), key)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(in, out) {
				t.Fatal("decoded bundles differ")
			}
		})
	}
}

func TestDecodePackagerRefuses(t *testing.T) {
	key, cert := recipients(t)
	doc, err := EncodePackagerKeys(testPeriodKeys(2, 2), cert)
	if err != nil {
		t.Fatal(err)
	}
	d := string(doc)
	startAttr := regexp.MustCompile(`start="[^"]*"`)
	for _, tc := range []struct {
		name string
		edit func(string) string
		opts []Option
		want error
	}{
		{"key ciphertext", func(s string) string { return editB64(t, s, "enc:CipherValue", cvRK0+3, flip) }, nil, ErrMAC},
		{"ValueMAC", func(s string) string { return editB64(t, s, "pskc:ValueMAC", 2, flip) }, nil, ErrMAC},
		{"start", func(s string) string { return startAttr.ReplaceAllString(s, `start="yesterday"`) }, nil, ErrMalformed},
		{"end before start", func(s string) string { return startAttr.ReplaceAllString(s, `start="2200-01-01T00:00:00Z"`) }, nil, ErrMalformed},
		{"start far past", func(s string) string { return startAttr.ReplaceAllString(s, `start="1000-01-01T00:00:00Z"`) }, nil, ErrMalformed},
		{"period id", func(s string) string { return strings.ReplaceAll(s, "s7-p101", "p101") }, nil, ErrMalformed},
		{"rule dropped", regexpReplace(`(?s)<ContentKeyUsageRule kid[^>]*>\s*<KeyPeriodFilter[^>]*/>\s*<AudioFilter/>.*?</ContentKeyUsageRule>`, ""), nil, ErrMalformed},
		{"both keys for video", func(s string) string { return strings.Replace(s, "<AudioFilter/>", "<VideoFilter/>", 1) }, nil, ErrMalformed},
		{"one key for all", func(s string) string { return strings.Replace(s, "<AudioFilter/>", "", 1) }, nil, ErrMalformed},
		{"label filter", func(s string) string { return strings.Replace(s, "<AudioFilter/>", `<LabelFilter label="x"/>`, 1) }, nil, ErrMalformed},
		{"release instants differ", func(s string) string { return strings.Replace(s, `releaseAt="1`, `releaseAt="2`, 1) }, nil, ErrMalformed},
		{"no release", regexpReplace(`<emb:Release [^>]*/>`, ""), nil, ErrMalformed},
		{"too many periods", nil, []Option{WithMaxPeriods(1)}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := d
			if tc.edit != nil {
				in = tc.edit(d)
			}
			got, err := DecodePackagerKeys([]byte(in), key, tc.opts...)
			if got != nil {
				t.Errorf("returned %d periods with the error", len(got))
			}
			wantOnly(t, err, tc.want)
			t.Log(err)
		})
	}
	_, err = DecodePackagerKeys(doc, otherKey)
	wantOnly(t, err, ErrRecipient)
	// A bundle document is not a packager document, nor the reverse.
	bdoc, err := EncodeBundles(testBundles(1), cert)
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodePackagerKeys(bdoc, key)
	oneSentinel(t, err)
	_, err = DecodeBundles(doc, key)
	oneSentinel(t, err)
}
