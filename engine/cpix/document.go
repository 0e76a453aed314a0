package cpix

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// encoder is one document being written. Both document kinds share its
// shape: the root, one DeliveryData for the recipient, then the lists in
// the order the CPIX schema requires (ContentKeyList, DRMSystemList,
// ContentKeyPeriodList, ContentKeyUsageRuleList).
type encoder struct {
	w writer
	c *config
	d *delivery
}

// newEncoder draws the document's fresh Document Key and MAC key, wraps
// both to the recipient and writes everything up to the ContentKeyList.
// With plain set and no recipient, it writes no DeliveryData and values
// go in the clear (SPEKE without content key encryption, over mutual TLS).
func newEncoder(c *config, recipient *x509.Certificate, emb bool) (*encoder, error) {
	e := &encoder{c: c}
	var wrappedDoc, wrappedMAC []byte
	if recipient != nil || !c.plain {
		pub, err := recipientKey(recipient)
		if err != nil {
			return nil, err
		}
		d, raw, err := newDelivery()
		if err != nil {
			return nil, err
		}
		if wrappedDoc, err = wrap(pub, raw[:docKeyLen]); err != nil {
			return nil, err
		}
		if wrappedMAC, err = wrap(pub, raw[docKeyLen:]); err != nil {
			return nil, err
		}
		e.d = d
	}
	w := &e.w
	w.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>`)
	attrs := []string{"version", c.version}
	if c.contentID != "" {
		attrs = append(attrs, "contentId", c.contentID)
	}
	attrs = append(attrs, "xmlns", nsCPIX, "xmlns:ds", nsDS, "xmlns:enc", nsEnc, "xmlns:pskc", nsPSKC)
	if emb {
		attrs = append(attrs, "xmlns:emb", Namespace)
	}
	w.start("CPIX", attrs...)
	if e.d == nil {
		return e, nil
	}
	w.start("DeliveryDataList")
	w.start("DeliveryData")
	w.start("DeliveryKey")
	w.start("ds:X509Data")
	w.leaf("ds:X509Certificate", b64(recipient.Raw))
	w.end("ds:X509Data")
	w.end("DeliveryKey")
	// DocumentKey names no algorithm: CPIX 2.4's schema refuses the
	// attribute, and AES-256-CBC is the only one CPIX defines.
	w.start("DocumentKey")
	w.start("Data")
	w.start("pskc:Secret")
	w.start("pskc:EncryptedValue")
	e.encrypted(algRSAOAEP, wrappedDoc)
	w.end("pskc:EncryptedValue")
	w.end("pskc:Secret")
	w.end("Data")
	w.end("DocumentKey")
	// The MAC key is wrapped to the recipient like the Document Key (CPIX
	// §"Authenticated Encryption") in the element PSKC's schema defines
	// for it, pskc:MACKey.
	w.start("MACMethod", "Algorithm", algHMAC512)
	w.start("pskc:MACKey")
	e.encrypted(algRSAOAEP, wrappedMAC)
	w.end("pskc:MACKey")
	w.end("MACMethod")
	w.end("DeliveryData")
	w.end("DeliveryDataList")
	return e, nil
}

func (e *encoder) encrypted(alg string, cv []byte) {
	e.w.leaf("enc:EncryptionMethod", "", "Algorithm", alg)
	e.w.start("enc:CipherData")
	e.w.leaf("enc:CipherValue", b64(cv))
	e.w.end("enc:CipherData")
}

// contentKey writes one ContentKey with its value sealed under the
// Document Key and returns the CipherValue bytes; in a document without
// DeliveryData, the value in the clear (and nil).
func (e *encoder) contentKey(kid [16]byte, scheme string, value []byte) []byte {
	w := &e.w
	attrs := []string{"kid", FormatUUID(kid)}
	if scheme != "" {
		attrs = append(attrs, "commonEncryptionScheme", scheme)
	}
	w.start("ContentKey", attrs...)
	w.start("Data")
	w.start("pskc:Secret")
	if e.d == nil {
		w.leaf("pskc:PlainValue", b64(value))
		w.end("pskc:Secret")
		w.end("Data")
		w.end("ContentKey")
		return nil
	}
	cv, mac := e.d.seal(value)
	w.start("pskc:EncryptedValue")
	e.encrypted(algAES256CBC, cv)
	w.end("pskc:EncryptedValue")
	w.leaf("pskc:ValueMAC", b64(mac))
	w.end("pskc:Secret")
	w.end("Data")
	w.end("ContentKey")
	return cv
}

func (e *encoder) period(id string, index uint64, start, end int64) {
	e.w.leaf("ContentKeyPeriod", "", "id", id, "index", strconv.FormatUint(index, 10), "start", e.dateTime(start), "end", e.dateTime(end))
}

// rule writes a key's usage rule: its period, the track filter of its
// content key context, then ext, embargo's extension (CPIX admits
// elements of other namespaces last, and a reader that does not know
// them skips them).
func (e *encoder) rule(kid [16]byte, periodID string, track Track, ext func()) {
	attrs := []string{"kid", FormatUUID(kid)}
	if track != TrackAll {
		attrs = append(attrs, "intendedTrackType", track.String())
	}
	e.w.start("ContentKeyUsageRule", attrs...)
	e.w.leaf("KeyPeriodFilter", "", "periodId", periodID)
	switch track {
	case TrackVideo:
		e.w.leaf("VideoFilter", "")
	case TrackAudio:
		e.w.leaf("AudioFilter", "")
	}
	if ext != nil {
		ext()
	}
	e.w.end("ContentKeyUsageRule")
}

// release writes embargo's extension of a packager key's usage rule: when
// the key reaches viewers, exactly (TAI ns) and in UTC for people.
func (e *encoder) release(at int64) {
	e.w.leaf("emb:Release", "", "releaseAt", strconv.FormatInt(at, 10), "utc", e.dateTime(at))
}

// dateTime writes a TAI instant as UTC with the configured fixed offset,
// to the nanosecond. A fixed offset is wrong by a second around a leap
// second, which is why bundles carry their instants exactly elsewhere.
func (e *encoder) dateTime(tai int64) string {
	return e.c.tai.ToTime(tai).UTC().Format(time.RFC3339Nano)
}

func (e *encoder) finish() ([]byte, error) {
	e.w.end("CPIX")
	e.w.b.WriteByte('\n')
	if e.w.b.Len() > e.c.maxSize {
		return nil, fmt.Errorf("%w: document of %d bytes, limit %d", ErrTooLarge, e.w.b.Len(), e.c.maxSize)
	}
	return e.w.b.Bytes(), nil
}

// periodID names a ContentKeyPeriod. It is an xs:ID, so it must not start
// with a digit.
func periodID(stream uint32, period uint64) string {
	return fmt.Sprintf("s%d-p%d", stream, period)
}

// parsePeriodID is periodID's inverse, canonical spellings only.
func parsePeriodID(id string) (uint32, uint64, error) {
	s, p, ok := strings.Cut(id, "-p")
	if !ok || !strings.HasPrefix(s, "s") {
		return 0, 0, fmt.Errorf("%w: period id %.40q", ErrMalformed, id)
	}
	stream, err := number(s[1:], "period id stream", 32)
	if err != nil {
		return 0, 0, err
	}
	period, err := number(p, "period id period", 64)
	if err != nil {
		return 0, 0, err
	}
	return uint32(stream), period, nil
}

// openDelivery finds the DeliveryData made for priv, checks its algorithms
// and unwraps the Document Key and the MAC key.
func openDelivery(x *xDoc, priv *rsa.PrivateKey) (*delivery, error) {
	if priv == nil {
		return nil, fmt.Errorf("%w: no private key", ErrInvalid)
	}
	if len(x.Delivery.Data) == 0 {
		return nil, fmt.Errorf("%w: no DeliveryData: values would be in the clear", ErrMalformed)
	}
	if len(x.Delivery.Data) > maxRecipients {
		return nil, fmt.Errorf("%w: %d recipients, limit %d", ErrTooLarge, len(x.Delivery.Data), maxRecipients)
	}
	var mine *xDeliveryData
	for i := range x.Delivery.Data {
		cert, err := deliveryCert(&x.Delivery.Data[i])
		if err != nil {
			return nil, err
		}
		if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok && pub.Equal(&priv.PublicKey) {
			mine = &x.Delivery.Data[i]
			break
		}
	}
	if mine == nil {
		return nil, fmt.Errorf("%w: no DeliveryData names this key's certificate", ErrRecipient)
	}
	if mine.DocKey == nil {
		return nil, fmt.Errorf("%w: no DocumentKey", ErrMalformed)
	}
	if a := mine.DocKey.Algorithm; a != "" && a != algAES256CBC {
		return nil, fmt.Errorf("%w: DocumentKey algorithm %.80q", ErrUnsupported, a)
	}
	dv, err := encryptedOf(mine.DocKey.Data, "DocumentKey")
	if err != nil {
		return nil, err
	}
	wrappedDoc, err := encValue(dv, algRSAOAEP, "DocumentKey")
	if err != nil {
		return nil, err
	}
	m := mine.MAC
	if m == nil {
		return nil, fmt.Errorf("%w: no MACMethod: values must be authenticated", ErrMalformed)
	}
	if m.Algorithm != algHMAC512 {
		return nil, fmt.Errorf("%w: MAC algorithm %.80q", ErrUnsupported, m.Algorithm)
	}
	mk, err := m.key()
	if err != nil {
		return nil, err
	}
	wrappedMAC, err := encValue(mk, algRSAOAEP, "MAC key")
	if err != nil {
		return nil, err
	}
	docKey, err := unwrap(priv, wrappedDoc)
	if err != nil {
		return nil, fmt.Errorf("DocumentKey: %w", err)
	}
	macKey, err := unwrap(priv, wrappedMAC)
	if err != nil {
		return nil, fmt.Errorf("MAC key: %w", err)
	}
	return deliveryFrom(docKey, macKey)
}

func deliveryCert(dd *xDeliveryData) (*x509.Certificate, error) {
	var raw []string
	if dd.Key != nil {
		for _, x := range dd.Key.X509 {
			raw = append(raw, x.Certs...)
		}
	}
	if len(raw) != 1 {
		return nil, fmt.Errorf("%w: DeliveryKey holds %d certificates, want 1", ErrMalformed, len(raw))
	}
	der, err := unb64(raw[0], "X509Certificate")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: DeliveryKey: %w", ErrMalformed, err)
	}
	return cert, nil
}

// key returns the one encrypted MAC key, in whichever spelling it came.
func (m *xMACMethod) key() (*xEnc, error) {
	var found []*xEnc
	if m.Key != nil {
		if m.Key.Method != nil || m.Key.Cipher != nil {
			found = append(found, &m.Key.xEnc)
		}
		if m.Key.Value != nil {
			found = append(found, m.Key.Value)
		}
	}
	if m.PSKCKey != nil {
		found = append(found, m.PSKCKey)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%w: MACMethod holds %d keys, want 1", ErrMalformed, len(found))
	}
	return found[0], nil
}

// encryptedOf returns a Data element's encrypted value; a value in the
// clear is refused, as it would travel unprotected.
func encryptedOf(d *xData, what string) (*xEnc, error) {
	switch {
	case d == nil || d.Secret == nil:
		return nil, fmt.Errorf("%w: %s has no Data/Secret", ErrMalformed, what)
	case d.Secret.Plain != nil:
		return nil, fmt.Errorf("%w: %s is in the clear", ErrMalformed, what)
	case d.Secret.Encrypted == nil:
		return nil, fmt.Errorf("%w: %s has no EncryptedValue", ErrMalformed, what)
	}
	return d.Secret.Encrypted, nil
}

// encValue checks an encrypted value's algorithm and returns its bytes.
func encValue(e *xEnc, alg, what string) ([]byte, error) {
	if e.Method == nil {
		return nil, fmt.Errorf("%w: %s has no EncryptionMethod", ErrMalformed, what)
	}
	if e.Method.Algorithm != alg {
		return nil, fmt.Errorf("%w: %s EncryptionMethod %.80q", ErrUnsupported, what, e.Method.Algorithm)
	}
	if alg == algRSAOAEP {
		if d := e.Method.Digest; d != nil && d.Algorithm != algSHA1 {
			return nil, fmt.Errorf("%w: %s OAEP digest %.80q", ErrUnsupported, what, d.Algorithm)
		}
		if p := e.Method.Params; p != nil && strings.TrimSpace(p.Text) != "" {
			return nil, fmt.Errorf("%w: %s OAEP label", ErrUnsupported, what)
		}
	}
	if e.Cipher == nil || e.Cipher.Value == nil {
		return nil, fmt.Errorf("%w: %s has no CipherValue", ErrMalformed, what)
	}
	return unb64(*e.Cipher.Value, what)
}

// sealed is one ContentKey's encrypted value and MAC, not yet checked.
type sealed struct {
	kid     [16]byte
	cv, mac []byte
}

func sealedKey(k *xContentKey) (sealed, error) {
	kid, err := ParseUUID(k.KID)
	if err != nil {
		return sealed{}, err
	}
	what := "ContentKey " + FormatUUID(kid)
	ev, err := encryptedOf(k.Data, what)
	if err != nil {
		return sealed{}, err
	}
	cv, err := encValue(ev, algAES256CBC, what)
	if err != nil {
		return sealed{}, err
	}
	if k.Data.Secret.MAC == nil {
		return sealed{}, fmt.Errorf("%w: %s has no ValueMAC", ErrMalformed, what)
	}
	mac, err := unb64(*k.Data.Secret.MAC, what+" ValueMAC")
	if err != nil {
		return sealed{}, err
	}
	return sealed{kid: kid, cv: cv, mac: mac}, nil
}

// begin checks the options and the input with check and starts a
// document for recipient (emb: with embargo's namespace): the first steps
// of both encoders.
func begin(opts []Option, recipient *x509.Certificate, emb bool, check func(*config) error) (*encoder, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := check(c); err != nil {
		return nil, err
	}
	return newEncoder(c, recipient, emb)
}

// open parses doc within the size limits (perPeriod elements a period may
// take), lets check judge its counts, unwraps the delivery keys for
// priv and reads the usage rules: the first steps of both decoders.
func open(doc []byte, priv *rsa.PrivateKey, opts []Option, perPeriod int, check func(*xDoc, *config) error) (*xDoc, *config, *delivery, map[[16]byte]rule, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	x, err := parse(doc, c, c.elemLimit(perPeriod))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := check(x, c); err != nil {
		return nil, nil, nil, nil, err
	}
	d, err := openDelivery(x, priv)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	rules, err := usage(x)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return x, c, d, rules, nil
}

// rule is what a key's usage rule says: its period, its content key
// context, and the rule itself for its extension elements.
type rule struct {
	period string
	track  Track
	x      *xRule
}

// usage maps each key to its usage rule, refusing duplicate period ids,
// duplicate rules, dangling references, filters this package does not
// write, and two keys matching one content key context of a period.
func usage(x *xDoc) (map[[16]byte]rule, error) {
	periods := make(map[string]bool, len(x.Periods.Period))
	for i := range x.Periods.Period {
		id := x.Periods.Period[i].ID
		if periods[id] {
			return nil, fmt.Errorf("%w: period id %.40q twice", ErrMalformed, id)
		}
		periods[id] = true
	}
	type context struct {
		period string
		track  Track
	}
	taken := make(map[context]bool, len(x.Rules.Rule))
	rules := make(map[[16]byte]rule, len(x.Rules.Rule))
	for i := range x.Rules.Rule {
		r := &x.Rules.Rule[i]
		kid, err := ParseUUID(r.KID)
		if err != nil {
			return nil, err
		}
		track := TrackAll
		switch {
		case len(r.Filters) != 1:
			return nil, fmt.Errorf("%w: usage rule for %s has %d KeyPeriodFilters, want 1", ErrMalformed, r.KID, len(r.Filters))
		case len(r.Label) != 0 || len(r.Bitrate) != 0 || len(r.Video)+len(r.Audio) > 1:
			return nil, fmt.Errorf("%w: usage rule for %s: filters other than one video or audio filter", ErrMalformed, r.KID)
		case len(r.Video) == 1:
			track = TrackVideo
		case len(r.Audio) == 1:
			track = TrackAudio
		}
		p := r.Filters[0].PeriodID
		if _, dup := rules[kid]; dup {
			return nil, fmt.Errorf("%w: two usage rules for %s", ErrMalformed, r.KID)
		}
		if !periods[p] {
			return nil, fmt.Errorf("%w: usage rule for %s names no period", ErrMalformed, r.KID)
		}
		// A key for every track overlaps any other key of its period.
		overlap := taken[context{p, track}] || taken[context{p, TrackAll}] ||
			(track == TrackAll && (taken[context{p, TrackVideo}] || taken[context{p, TrackAudio}]))
		if overlap {
			return nil, fmt.Errorf("%w: two keys match one content key context of period %.40q", ErrMalformed, p)
		}
		taken[context{p, track}] = true
		rules[kid] = rule{period: p, track: track, x: r}
	}
	return rules, nil
}
