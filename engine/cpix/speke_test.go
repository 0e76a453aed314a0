package cpix

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/engine/cpix/cpixtest"
	"github.com/embargo-live/embargo/seal"
)

// spekeRequest is a kept example request with the test recipient's
// certificate in place of its placeholder, and its SPEKE version.
func spekeRequest(t testing.TB, name string) ([]byte, string) {
	t.Helper()
	_, cert := recipients(t)
	doc, ok := cpixtest.SPEKERequests()[name]
	if !ok {
		t.Fatalf("no example request %s", name)
	}
	version := strings.SplitN(strings.TrimPrefix(name, "live-"), "-", 2)[0]
	return bytes.Replace(doc, []byte(">CERTIFICATE<"), []byte(">"+base64.StdEncoding.EncodeToString(cert.Raw)+"<"), 1), version
}

// answerKeys makes keys for every period of req with the KIDs it asked for.
func answerKeys(req *SPEKERequest) []PeriodKeys {
	out := make([]PeriodKeys, len(req.Periods))
	for i, p := range req.Periods {
		pk := PeriodKeys{Period: p.Index, Start: testReleaseAt + int64(i)*testPeriodLen, End: testReleaseAt + int64(i+1)*testPeriodLen, ReleaseAt: testReleaseAt - testPeriodLen}
		pk.Keys = make([]seal.ContentKey, len(p.Keys))
		for _, k := range p.Keys {
			j := max(0, int(k.Track)-int(TrackVideo))
			pk.Keys[j].KID = k.KID
			pk.Keys[j].Key = [16]byte{byte(i), byte(j), 0xee}
		}
		out[i] = pk
	}
	return out
}

// TestSPEKEExamples: every kept example request parses to what it says,
// and its answer is valid against both CPIX schemas, echoes the request's
// version, carries the asked signalling and, where the request had a
// certificate, only encrypted values.
func TestSPEKEExamples(t *testing.T) {
	for name, want := range map[string]struct {
		version, cpix   string
		periods, keys   int
		systems         int
		encrypted       bool
		firstIndex      uint64
		firstTrack      Track
		firstScheme     string
		secondPeriodKID string
	}{
		"live-2.0-clear.xml":     {"2.0", "2.3", 2, 4, 4, false, 11425, TrackVideo, "cenc", "8f2a9c4e-0b1d-4e7a-9d3c-5a6b7c8d9e0f"},
		"live-2.1-encrypted.xml": {"2.1", "2.4", 1, 2, 2, true, 11425, TrackVideo, "cbcs", ""},
		"live-2.0-shared.xml":    {"2.0", "2.3", 1, 1, 0, false, 11427, TrackAll, "cenc", ""},
	} {
		t.Run(name, func(t *testing.T) {
			doc, version := spekeRequest(t, name)
			if version != want.version {
				t.Fatalf("version %s", version)
			}
			req, err := ParseSPEKERequest(doc, version)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, p := range req.Periods {
				n += len(p.Keys)
			}
			first := req.Periods[0].Keys[0]
			switch {
			case req.Version != want.cpix || req.ContentID != "abc123":
				t.Errorf("version %q content %q", req.Version, req.ContentID)
			case len(req.Periods) != want.periods || n != want.keys || len(req.Systems) != want.systems:
				t.Errorf("%d periods, %d keys, %d systems", len(req.Periods), n, len(req.Systems))
			case (req.Recipient != nil) != want.encrypted:
				t.Errorf("recipient %v", req.Recipient != nil)
			case req.Periods[0].Index != want.firstIndex || first.Track != want.firstTrack || first.Scheme != want.firstScheme:
				t.Errorf("first period %d, key %+v", req.Periods[0].Index, first)
			case want.secondPeriodKID != "" && FormatUUID(req.Periods[1].Keys[0].KID) != want.secondPeriodKID:
				t.Errorf("second period's first KID %s", FormatUUID(req.Periods[1].Keys[0].KID))
			}
			resp, err := EncodeSPEKEResponse(req, answerKeys(req))
			if err != nil {
				t.Fatal(err)
			}
			cpixtest.Validate(t, resp)
			s := string(resp)
			if !strings.Contains(s, `version="`+want.cpix+`"`) || !strings.Contains(s, `contentId="abc123"`) {
				t.Error("answer does not echo version and content id")
			}
			if got := strings.Count(s, "<pskc:PlainValue>"); (got == 0) != want.encrypted || (!want.encrypted && got != want.keys) {
				t.Errorf("%d values in the clear", got)
			}
			for _, sys := range req.Systems {
				box := commonPSSH(sys.KID)
				if sys.PSSH && !strings.Contains(s, "<PSSH>"+base64.StdEncoding.EncodeToString(box)+"</PSSH>") {
					t.Errorf("no PSSH for %s", FormatUUID(sys.KID))
				}
			}
		})
	}
}

// TestCommonPSSH: the box is ISO BMFF 'pssh' version 1 of the W3C common
// system, with one KID and no data, its size in its header.
func TestCommonPSSH(t *testing.T) {
	kid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b := commonPSSH(kid)
	sys := []byte{0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b}
	if int(binary.BigEndian.Uint32(b)) != len(b) || string(b[4:8]) != "pssh" || b[8] != 1 || !bytes.Equal(b[12:28], sys) ||
		binary.BigEndian.Uint32(b[28:]) != 1 || !bytes.Equal(b[32:48], kid[:]) || binary.BigEndian.Uint32(b[48:]) != 0 {
		t.Fatalf("pssh box %x", b)
	}
}

// TestSPEKERefuses: each request embargo cannot answer faithfully is
// refused with its reason, never answered in part.
func TestSPEKERefuses(t *testing.T) {
	doc, _ := spekeRequest(t, "live-2.0-clear.xml")
	d := string(doc)
	for _, tc := range []struct {
		name, version string
		edit          func(string) string
		want          error
	}{
		{"SPEKE 1.0", "1.0", nil, ErrUnsupported},
		{"CPIX version for 2.1", "2.1", nil, ErrUnsupported},
		{"no periods", "2.0", regexpReplace(`(?s)<cpix:ContentKeyPeriodList>.*</cpix:ContentKeyPeriodList>`, ""), ErrMalformed},
		{"Widevine", "2.0", func(s string) string {
			return strings.Replace(s, SystemClearKey, "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed", 1)
		}, ErrUnsupported},
		{"two video keys in a period", "2.0", func(s string) string { return strings.Replace(s, "<cpix:AudioFilter/>", "<cpix:VideoFilter/>", 1) }, ErrMalformed},
		{"a key for all and a video key", "2.0", func(s string) string { return strings.Replace(s, "<cpix:AudioFilter/>", "", 1) }, ErrMalformed},
		{"same index twice", "2.0", func(s string) string { return strings.Replace(s, `index="11426"`, `index="11425"`, 1) }, ErrMalformed},
		{"index not a number", "2.0", func(s string) string { return strings.Replace(s, `index="11426"`, `index="+11426"`, 1) }, ErrMalformed},
		{"key value sent", "2.0", func(s string) string {
			return strings.Replace(s, `commonEncryptionScheme="cenc"/>`, `commonEncryptionScheme="cenc"><cpix:Data><pskc:Secret><pskc:PlainValue>AAAAAAAAAAAAAAAAAAAAAA==</pskc:PlainValue></pskc:Secret></cpix:Data></cpix:ContentKey>`, 1)
		}, ErrMalformed},
		{"scheme", "2.0", func(s string) string {
			return strings.Replace(s, `commonEncryptionScheme="cenc"`, `commonEncryptionScheme="aes1"`, 1)
		}, ErrUnsupported},
		{"no scheme", "2.0", func(s string) string { return strings.Replace(s, ` commonEncryptionScheme="cenc"`, ``, 1) }, ErrUnsupported},
		{"key without rule", "2.0", regexpReplace(`(?s)<cpix:ContentKeyUsageRule kid="0a1b2c3d[^>]*>.*?</cpix:ContentKeyUsageRule>`, ""), ErrMalformed},
		{"DRMSystem for an unknown KID", "2.0", func(s string) string {
			return strings.Replace(s, `<cpix:DRMSystem kid="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"`, `<cpix:DRMSystem kid="0a1b2c3d-4e5f-4a6b-8c7d-000000000000"`, 1)
		}, ErrMalformed},
		{"DTD", "2.0", func(s string) string { return strings.Replace(s, "?>", "?><!DOCTYPE x [<!ENTITY a \"b\">]>", 1) }, ErrMalformed},
		{"not XML", "2.0", func(string) string { return "{}" }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := d
			if tc.edit != nil {
				in = tc.edit(d)
			}
			req, err := ParseSPEKERequest([]byte(in), tc.version)
			if req != nil {
				t.Error("a request returned with the error")
			}
			wantOnly(t, err, tc.want)
			t.Log(err)
		})
	}
	// A recipient key CPIX cannot encrypt to.
	small := strings.Replace(string(doc), "<cpix:ContentKeyList>", `<cpix:DeliveryDataList><cpix:DeliveryData><cpix:DeliveryKey><ds:X509Data xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></cpix:DeliveryKey></cpix:DeliveryData></cpix:DeliveryDataList><cpix:ContentKeyList>`, 1)
	if _, err := ParseSPEKERequest([]byte(small), "2.0"); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad certificate: %v", err)
	}
}

// TestSPEKEAnswerRefuses: the encoder never answers a KID with the key of
// another track or period.
func TestSPEKEAnswerRefuses(t *testing.T) {
	doc, version := spekeRequest(t, "live-2.0-clear.xml")
	req, err := ParseSPEKERequest(doc, version)
	if err != nil {
		t.Fatal(err)
	}
	keys := answerKeys(req)
	keys[0].Keys[0], keys[0].Keys[1] = keys[0].Keys[1], keys[0].Keys[0]
	if _, err := EncodeSPEKEResponse(req, keys); !errors.Is(err, ErrInvalid) {
		t.Errorf("swapped tracks: %v", err)
	}
	if _, err := EncodeSPEKEResponse(req, answerKeys(req)[:1]); !errors.Is(err, ErrInvalid) {
		t.Errorf("a period short: %v", err)
	}
}
