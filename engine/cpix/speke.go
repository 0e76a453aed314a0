package cpix

import (
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"strings"
)

// SPEKE v2 (AWS Secure Packager and Encoder Key Exchange) is a CPIX profile
// an encryptor speaks to its key provider: it sends a CPIX document naming
// the keys it wants — its own KIDs, the key period indexes, the tracks and
// the DRM systems to signal — and gets the same document back with the key
// values and the signalling filled in. ParseSPEKERequest reads the request;
// EncodeSPEKEResponse writes the answer.

// Registered DRM system ids this package signals (dashif.org/identifiers).
const (
	// SystemCommon is the W3C Common PSSH box format, which EME ClearKey
	// players read from the media.
	SystemCommon = "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
	// SystemClearKey is DASH-IF's ClearKey system id, for DASH manifests.
	SystemClearKey = "e2719d58-a985-b3c9-781a-b030af78d30e"
)

// spekeVersions maps the SPEKE versions served (the X-Speke-Version
// header) to the CPIX@version each requires.
var spekeVersions = map[string]string{"2.0": "2.3", "2.1": "2.4"}

// maxSPEKEKeys bounds the keys of one request: two per period.
const maxSPEKEKeys = 2 * 64

// SPEKERequest is an encryptor's request.
type SPEKERequest struct {
	// Version is CPIX@version, echoed in the answer; ContentID likewise.
	Version, ContentID string
	// Recipient is the certificate of the request's DeliveryData, to which
	// the answer's values are encrypted; nil when the encryptor asked for
	// values in the clear.
	Recipient *x509.Certificate
	// Periods are the key periods asked for, in document order.
	Periods []SPEKEPeriod
	// Systems are the DRM systems whose signalling is asked for.
	Systems []SPEKESystem
}

// SPEKEPeriod is one ContentKeyPeriod and the keys its usage rules name.
type SPEKEPeriod struct {
	ID    string // ContentKeyPeriod@id, echoed
	Index uint64 // ContentKeyPeriod@index
	Keys  []SPEKEKey
}

// SPEKEKey is one content key the encryptor named.
type SPEKEKey struct {
	KID    [16]byte
	Scheme string // commonEncryptionScheme
	Track  Track
	Intent string // intendedTrackType, echoed
}

// SPEKESystem is one DRMSystem of the request: which signalling to fill.
type SPEKESystem struct {
	SystemID   string // SystemCommon or SystemClearKey
	KID        [16]byte
	PSSH, Data bool // PSSH, ContentProtectionData asked for
}

// ParseSPEKERequest reads a SPEKE v2 request for spekeVersion ("2.0" or
// "2.1", the X-Speke-Version header). It refuses, wrapping ErrMalformed,
// ErrUnsupported or ErrTooLarge: a CPIX@version other than the one the
// SPEKE version requires, a request without key periods (embargo rotates
// keys), key values in the request, a key without exactly one usage rule
// naming one period, two keys for one content key context of a period
// (CPIX), more than one DeliveryData or a recipient key CPIX cannot
// encrypt to, and DRM systems other than SystemCommon and SystemClearKey.
func ParseSPEKERequest(doc []byte, spekeVersion string, opts ...Option) (*SPEKERequest, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	want, ok := spekeVersions[spekeVersion]
	if !ok {
		return nil, fmt.Errorf("%w: Unsupported SPEKE version %.10q: this key provider serves 2.0 and 2.1", ErrUnsupported, spekeVersion)
	}
	x, err := parse(doc, c, c.elemLimit(32))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(x.Version) != want {
		return nil, fmt.Errorf("%w: CPIX@version %.10q, SPEKE %s requires %s", ErrUnsupported, x.Version, spekeVersion, want)
	}
	keys, periods := x.Keys.Key, x.Periods.Period
	switch {
	case len(keys) == 0:
		return nil, fmt.Errorf("%w: no ContentKey", ErrMalformed)
	case len(periods) == 0:
		return nil, fmt.Errorf("%w: no ContentKeyPeriod: embargo rotates keys, name each period's index", ErrMalformed)
	case len(periods) > c.maxPeriods || len(keys) > min(maxSPEKEKeys, 2*c.maxPeriods):
		return nil, fmt.Errorf("%w: %d keys in %d periods", ErrTooLarge, len(keys), len(periods))
	case len(x.Delivery.Data) > 1:
		return nil, fmt.Errorf("%w: %d DeliveryData, want at most 1", ErrMalformed, len(x.Delivery.Data))
	}
	r := &SPEKERequest{Version: want, ContentID: x.ContentID}
	if len(x.Delivery.Data) == 1 {
		if r.Recipient, err = deliveryCert(&x.Delivery.Data[0]); err != nil {
			return nil, err
		}
		if _, err := recipientKey(r.Recipient); err != nil {
			return nil, err
		}
	}
	rules, err := usage(x)
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(periods))
	seen := make(map[uint64]bool, len(periods))
	r.Periods = make([]SPEKEPeriod, len(periods))
	for i, p := range periods {
		n, err := number(p.Index, "ContentKeyPeriod@index", 63)
		if err != nil {
			return nil, err
		}
		if seen[n] {
			return nil, fmt.Errorf("%w: period index %d twice", ErrMalformed, n)
		}
		seen[n], index[p.ID] = true, i
		r.Periods[i] = SPEKEPeriod{ID: p.ID, Index: n}
	}
	kids := make(map[[16]byte]bool, len(keys))
	for i := range keys {
		k := &keys[i]
		kid, err := ParseUUID(k.KID)
		if err != nil {
			return nil, err
		}
		rule, ok := rules[kid]
		switch {
		case kids[kid]:
			return nil, fmt.Errorf("%w: KID %s twice", ErrMalformed, FormatUUID(kid))
		case k.Data != nil:
			return nil, fmt.Errorf("%w: ContentKey %s carries a value: the key provider chooses it", ErrMalformed, FormatUUID(kid))
		case !ok:
			return nil, fmt.Errorf("%w: ContentKey %s has no usage rule naming its period", ErrMalformed, FormatUUID(kid))
		}
		switch k.Scheme {
		case "cenc", "cbc1", "cens", "cbcs":
		default:
			return nil, fmt.Errorf("%w: ContentKey %s commonEncryptionScheme %.10q", ErrUnsupported, FormatUUID(kid), k.Scheme)
		}
		kids[kid] = true
		p := &r.Periods[index[rule.period]]
		p.Keys = append(p.Keys, SPEKEKey{KID: kid, Scheme: k.Scheme, Track: rule.track, Intent: rule.x.Intent})
	}
	if len(rules) != len(keys) {
		return nil, fmt.Errorf("%w: %d keys, %d usage rules", ErrMalformed, len(keys), len(rules))
	}
	for _, p := range r.Periods {
		if len(p.Keys) == 0 {
			return nil, fmt.Errorf("%w: period %.40q has no key", ErrMalformed, p.ID)
		}
	}
	for _, s := range x.DRM.System {
		id := strings.ToLower(strings.TrimSpace(s.SystemID))
		if id != SystemCommon && id != SystemClearKey {
			return nil, fmt.Errorf("%w: DRM system %.40q: this key provider signals W3C common (%s) and ClearKey (%s)", ErrUnsupported, s.SystemID, SystemCommon, SystemClearKey)
		}
		kid, err := ParseUUID(s.KID)
		if err != nil {
			return nil, err
		}
		if !kids[kid] {
			return nil, fmt.Errorf("%w: DRMSystem for %s, a KID the request does not name", ErrMalformed, FormatUUID(kid))
		}
		r.Systems = append(r.Systems, SPEKESystem{SystemID: id, KID: kid, PSSH: s.PSSH != nil, Data: s.CPD != nil})
	}
	return r, nil
}

// EncodeSPEKEResponse answers req with keys: keys[i] holds period
// req.Periods[i]'s content keys in TrackOf order and its ReleaseAt. Each
// requested KID must be the KID of the key of its track. The answer echoes
// the request's version, content id, periods and usage rules (each ending
// with embargo's emb:Release), gives each key's value — encrypted to
// req.Recipient, or in the clear when the request had no DeliveryData —
// and fills each DRMSystem's PSSH (a W3C common 'pssh' box, version 1,
// naming the KID) and ContentProtectionData (a <cenc:pssh> element holding
// it) where the request asked. HLS signalling is not given: no ClearKey
// HLS signalling is standard, and CPIX 2.4 has no URIExtXKey.
func EncodeSPEKEResponse(req *SPEKERequest, keys []PeriodKeys, opts ...Option) ([]byte, error) {
	values, err := spekeValues(req, keys)
	if err != nil {
		return nil, err
	}
	opts = append(opts, func(c *config) { c.version, c.contentID, c.plain = req.Version, req.ContentID, true })
	e, err := begin(opts, req.Recipient, true, func(*config) error { return nil })
	if err != nil {
		return nil, err
	}
	w := &e.w
	w.start("ContentKeyList")
	for _, p := range req.Periods {
		for _, k := range p.Keys {
			v := values[k.KID]
			e.contentKey(k.KID, k.Scheme, v[:])
		}
	}
	w.end("ContentKeyList")
	if len(req.Systems) > 0 {
		w.start("DRMSystemList")
		for _, s := range req.Systems {
			w.start("DRMSystem", "systemId", s.SystemID, "kid", FormatUUID(s.KID))
			box := commonPSSH(s.KID)
			if s.PSSH {
				w.leaf("PSSH", b64(box))
			}
			if s.Data {
				w.leaf("ContentProtectionData", b64([]byte(`<cenc:pssh xmlns:cenc="urn:mpeg:cenc:2013">`+b64(box)+`</cenc:pssh>`)))
			}
			w.end("DRMSystem")
		}
		w.end("DRMSystemList")
	}
	w.start("ContentKeyPeriodList")
	for i, p := range req.Periods {
		e.w.leaf("ContentKeyPeriod", "", "id", p.ID, "index", fmt.Sprint(p.Index), "start", e.dateTime(keys[i].Start), "end", e.dateTime(keys[i].End))
	}
	w.end("ContentKeyPeriodList")
	w.start("ContentKeyUsageRuleList")
	for i, p := range req.Periods {
		for _, k := range p.Keys {
			attrs := []string{"kid", FormatUUID(k.KID)}
			if k.Intent != "" {
				attrs = append(attrs, "intendedTrackType", k.Intent)
			}
			w.start("ContentKeyUsageRule", attrs...)
			w.leaf("KeyPeriodFilter", "", "periodId", p.ID)
			switch k.Track {
			case TrackVideo:
				w.leaf("VideoFilter", "")
			case TrackAudio:
				w.leaf("AudioFilter", "")
			}
			e.release(keys[i].ReleaseAt)
			w.end("ContentKeyUsageRule")
		}
	}
	w.end("ContentKeyUsageRuleList")
	return e.finish()
}

// spekeValues matches each requested KID with the key of its track.
func spekeValues(req *SPEKERequest, keys []PeriodKeys) (map[[16]byte][16]byte, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrInvalid)
	}
	if len(keys) != len(req.Periods) {
		return nil, fmt.Errorf("%w: keys for %d periods, the request names %d", ErrInvalid, len(keys), len(req.Periods))
	}
	out := make(map[[16]byte][16]byte)
	for i, p := range req.Periods {
		pk := keys[i]
		if len(pk.Keys) != len(p.Keys) || pk.Start < 0 || pk.End < pk.Start || pk.ReleaseAt < 0 {
			return nil, fmt.Errorf("%w: period index %d: %d keys for %d asked", ErrInvalid, p.Index, len(pk.Keys), len(p.Keys))
		}
		for _, k := range p.Keys {
			j := max(0, int(k.Track)-int(TrackVideo))
			if TrackOf(j, len(pk.Keys)) != k.Track || pk.Keys[j].KID != k.KID {
				return nil, fmt.Errorf("%w: period index %d: KID %s is not the %s key given", ErrInvalid, p.Index, FormatUUID(k.KID), k.Track)
			}
			out[k.KID] = pk.Keys[j].Key
		}
	}
	return out, nil
}

// commonPSSH is the W3C Common PSSH box (version 1) naming kid: what an
// EME ClearKey player reads from the media to ask for the key.
func commonPSSH(kid [16]byte) []byte {
	sys, _ := ParseUUID(SystemCommon)
	b := make([]byte, 0, 52)
	b = binary.BigEndian.AppendUint32(b, 52)
	b = append(b, "pssh"...)
	b = append(b, 1, 0, 0, 0) // version 1, no flags
	b = append(b, sys[:]...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, kid[:]...)
	b = binary.BigEndian.AppendUint32(b, 0) // no data
	return b
}
