package cpix

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// writer emits XML with the fixed prefixes CPIX documents conventionally
// use (cpix as the default namespace; ds, enc, pskc, emb). encoding/xml's
// Marshal cannot choose prefixes, so the encoder writes tokens by hand and
// escapes every value; names are all constants of this package.
type writer struct {
	b     bytes.Buffer
	depth int
}

func (w *writer) indent() {
	w.b.WriteByte('\n')
	for range w.depth {
		w.b.WriteString("  ")
	}
}

func (w *writer) tag(name string, attrs []string) {
	w.b.WriteByte('<')
	w.b.WriteString(name)
	for i := 0; i+1 < len(attrs); i += 2 {
		w.b.WriteByte(' ')
		w.b.WriteString(attrs[i])
		w.b.WriteString(`="`)
		xml.EscapeText(&w.b, []byte(attrs[i+1]))
		w.b.WriteByte('"')
	}
}

// start opens an element with attributes given as name, value pairs.
func (w *writer) start(name string, attrs ...string) {
	w.indent()
	w.tag(name, attrs)
	w.b.WriteByte('>')
	w.depth++
}

func (w *writer) end(name string) {
	w.depth--
	w.indent()
	w.b.WriteString("</")
	w.b.WriteString(name)
	w.b.WriteByte('>')
}

// leaf writes an element with text content, or an empty element.
func (w *writer) leaf(name, text string, attrs ...string) {
	w.indent()
	w.tag(name, attrs)
	if text == "" {
		w.b.WriteString("/>")
		return
	}
	w.b.WriteByte('>')
	xml.EscapeText(&w.b, []byte(text))
	w.b.WriteString("</")
	w.b.WriteString(name)
	w.b.WriteByte('>')
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// unb64 decodes xs:base64Binary, which may carry XML whitespace.
func unb64(s, what string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: bad base64", ErrMalformed, what)
	}
	return b, nil
}

// number parses a canonical decimal attribute: no sign, no leading zeros,
// so that one value has one spelling.
func number(s, what string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil || strconv.FormatUint(v, 10) != s {
		return 0, fmt.Errorf("%w: %s %.30q", ErrMalformed, what, s)
	}
	return v, nil
}

// scan walks the raw tokens before any structure is built: it refuses
// DTDs (a DOCTYPE is how entity expansion would get in), more than one root
// or text beside it, nesting past maxDepth and more than limit elements, so
// that Unmarshal never allocates for a document that is refused anyway.
func scan(doc []byte, limit int) error {
	d := xml.NewDecoder(bytes.NewReader(doc))
	depth, elems, roots := 0, 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return fmt.Errorf("%w: DTDs and directives are refused", ErrMalformed)
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 {
					return fmt.Errorf("%w: more than one root element", ErrMalformed)
				}
			}
			if depth++; depth > maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrTooLarge, maxDepth)
			}
			if elems++; elems > limit {
				return fmt.Errorf("%w: more than %d elements", ErrTooLarge, limit)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) != 0 {
				return fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
		}
	}
	if roots != 1 || depth != 0 {
		return fmt.Errorf("%w: no complete root element", ErrMalformed)
	}
	return nil
}

// parse bounds, scans and unmarshals a document.
func parse(doc []byte, c *config, elemLimit int) (*xDoc, error) {
	if len(doc) > c.maxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(doc), c.maxSize)
	}
	if err := scan(doc, elemLimit); err != nil {
		return nil, err
	}
	var x xDoc
	if err := xml.Unmarshal(doc, &x); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &x, nil
}

// The decoding model: only what this package reads, every element
// namespace-qualified so that a look-alike in another namespace is not
// taken for it. Elements the model does not name (signatures, filters,
// other DRM systems' signaling) are skipped.
type xDoc struct {
	XMLName   xml.Name  `xml:"urn:dashif:org:cpix CPIX"`
	Version   string    `xml:"version,attr"`
	ContentID string    `xml:"contentId,attr"`
	Delivery  xDelivery `xml:"urn:dashif:org:cpix DeliveryDataList"`
	Keys      xKeys     `xml:"urn:dashif:org:cpix ContentKeyList"`
	DRM       xDRMs     `xml:"urn:dashif:org:cpix DRMSystemList"`
	Periods   xPeriods  `xml:"urn:dashif:org:cpix ContentKeyPeriodList"`
	Rules     xRules    `xml:"urn:dashif:org:cpix ContentKeyUsageRuleList"`
}

type xDelivery struct {
	Data []xDeliveryData `xml:"urn:dashif:org:cpix DeliveryData"`
}

type xDeliveryData struct {
	Key    *xKeyInfo   `xml:"urn:dashif:org:cpix DeliveryKey"`
	DocKey *xDocKey    `xml:"urn:dashif:org:cpix DocumentKey"`
	MAC    *xMACMethod `xml:"urn:dashif:org:cpix MACMethod"`
}

type xKeyInfo struct {
	X509 []xX509Data `xml:"http://www.w3.org/2000/09/xmldsig# X509Data"`
}

type xX509Data struct {
	Certs []string `xml:"http://www.w3.org/2000/09/xmldsig# X509Certificate"`
}

type xDocKey struct {
	Algorithm string `xml:"Algorithm,attr"`
	Data      *xData `xml:"urn:dashif:org:cpix Data"`
}

type xMACMethod struct {
	Algorithm string   `xml:"Algorithm,attr"`
	Key       *xMACKey `xml:"urn:dashif:org:cpix Key"`
	PSKCKey   *xEnc    `xml:"urn:ietf:params:xml:ns:keyprov:pskc MACKey"`
}

// xMACKey takes both spellings seen in the field: xmlenc's children
// directly under Key (the DASH-IF test vectors) or inside a
// pskc:EncryptedValue (the SPEKE reference server).
type xMACKey struct {
	xEnc
	Value *xEnc `xml:"urn:ietf:params:xml:ns:keyprov:pskc EncryptedValue"`
}

type xData struct {
	Secret *xSecret `xml:"urn:ietf:params:xml:ns:keyprov:pskc Secret"`
}

type xSecret struct {
	Plain     *string `xml:"urn:ietf:params:xml:ns:keyprov:pskc PlainValue"`
	Encrypted *xEnc   `xml:"urn:ietf:params:xml:ns:keyprov:pskc EncryptedValue"`
	MAC       *string `xml:"urn:ietf:params:xml:ns:keyprov:pskc ValueMAC"`
}

type xEnc struct {
	Method *xMethod `xml:"http://www.w3.org/2001/04/xmlenc# EncryptionMethod"`
	Cipher *xCipher `xml:"http://www.w3.org/2001/04/xmlenc# CipherData"`
}

type xMethod struct {
	Algorithm string     `xml:"Algorithm,attr"`
	Digest    *xDigest   `xml:"http://www.w3.org/2000/09/xmldsig# DigestMethod"`
	Params    *xOAEPData `xml:"http://www.w3.org/2001/04/xmlenc# OAEPparams"`
}

type xDigest struct {
	Algorithm string `xml:"Algorithm,attr"`
}

type xOAEPData struct {
	Text string `xml:",chardata"`
}

type xCipher struct {
	Value *string `xml:"http://www.w3.org/2001/04/xmlenc# CipherValue"`
}

type xKeys struct {
	Key []xContentKey `xml:"urn:dashif:org:cpix ContentKey"`
}

type xContentKey struct {
	KID    string `xml:"kid,attr"`
	IV     string `xml:"explicitIV,attr"`
	Scheme string `xml:"commonEncryptionScheme,attr"`
	Data   *xData `xml:"urn:dashif:org:cpix Data"`
}

type xDRMs struct {
	System []xDRMSystem `xml:"urn:dashif:org:cpix DRMSystem"`
}

// xDRMSystem is a SPEKE request's ask for signalling: which elements are
// present says what the encryptor wants filled in.
type xDRMSystem struct {
	SystemID string     `xml:"systemId,attr"`
	KID      string     `xml:"kid,attr"`
	PSSH     *string    `xml:"urn:dashif:org:cpix PSSH"`
	CPD      *string    `xml:"urn:dashif:org:cpix ContentProtectionData"`
	HLS      []struct{} `xml:"urn:dashif:org:cpix HLSSignalingData"`
}

type xBundle struct {
	Stream    string   `xml:"stream,attr"`
	Period    string   `xml:"period,attr"`
	ReleaseAt string   `xml:"releaseAt,attr"`
	PresentAt string   `xml:"presentAt,attr"`
	Announce  []string `xml:"https://github.com/embargo-live/embargo/ns/cpix/v1 Announce"`
	MAC       []string `xml:"https://github.com/embargo-live/embargo/ns/cpix/v1 MAC"`
}

type xPeriods struct {
	Period []xPeriod `xml:"urn:dashif:org:cpix ContentKeyPeriod"`
}

type xPeriod struct {
	ID    string `xml:"id,attr"`
	Index string `xml:"index,attr"`
	Start string `xml:"start,attr"`
	End   string `xml:"end,attr"`
}

type xRules struct {
	Rule []xRule `xml:"urn:dashif:org:cpix ContentKeyUsageRule"`
}

type xRule struct {
	KID     string     `xml:"kid,attr"`
	Intent  string     `xml:"intendedTrackType,attr"`
	Filters []xFilter  `xml:"urn:dashif:org:cpix KeyPeriodFilter"`
	Video   []struct{} `xml:"urn:dashif:org:cpix VideoFilter"`
	Audio   []struct{} `xml:"urn:dashif:org:cpix AudioFilter"`
	Label   []struct{} `xml:"urn:dashif:org:cpix LabelFilter"`
	Bitrate []struct{} `xml:"urn:dashif:org:cpix BitrateFilter"`
	Bundle  []xBundle  `xml:"https://github.com/embargo-live/embargo/ns/cpix/v1 Bundle"`
	Release []xRelease `xml:"https://github.com/embargo-live/embargo/ns/cpix/v1 Release"`
}

type xRelease struct {
	ReleaseAt string `xml:"releaseAt,attr"`
}

type xFilter struct {
	PeriodID string `xml:"periodId,attr"`
}
