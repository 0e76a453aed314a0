package cpix

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/wire"
)

// perBundle bounds the elements one period adds to a document: its
// ANNOUNCE datagrams plus a fixed few dozen for the key, period and rule.
const perBundle = wire.MaxShards + 48

// EncodeBundles writes the bundles as one CPIX document for the edge that
// holds recipient's private key. Each RK is encrypted under a Document Key
// drawn fresh for this document, which is wrapped to the recipient's RSA
// key; everything else a bundle holds is in embargo's extension element
// in the period's usage rule,
// authenticated with the document's MAC key (see the package doc).
//
// Bundles must name distinct (stream, period) pairs, have 1 to
// wire.MaxShards shards of 1 to wire.MaxDatagram bytes, releaseAt ≥ 0 and
// presentAt ≥ releaseAt; there must be 1 to the period limit of them, and
// the document must fit the size limit.
func EncodeBundles(bundles []*bundle.Bundle, recipient *x509.Certificate, opts ...Option) ([]byte, error) {
	e, err := begin(opts, recipient, true, func(c *config) error { return checkBundles(bundles, c) })
	if err != nil {
		return nil, err
	}
	w := &e.w
	cvs := make([][]byte, len(bundles))
	w.start("ContentKeyList")
	for i, b := range bundles {
		cvs[i] = e.contentKey(BundleKID(b.Stream, b.Period), "", b.RK[:])
	}
	w.end("ContentKeyList")
	w.start("ContentKeyPeriodList")
	for _, b := range bundles {
		e.period(periodID(b.Stream, b.Period), b.Period, b.ReleaseAt, b.PresentAt)
	}
	w.end("ContentKeyPeriodList")
	w.start("ContentKeyUsageRuleList")
	for i, b := range bundles {
		kid := BundleKID(b.Stream, b.Period)
		e.rule(kid, periodID(b.Stream, b.Period), TrackAll, func() {
			w.start("emb:Bundle",
				"stream", strconv.FormatUint(uint64(b.Stream), 10),
				"period", strconv.FormatUint(b.Period, 10),
				"releaseAt", strconv.FormatInt(b.ReleaseAt, 10),
				"presentAt", strconv.FormatInt(b.PresentAt, 10))
			for _, s := range b.Shards {
				w.leaf("emb:Announce", b64(s))
			}
			w.leaf("emb:MAC", b64(bundleMAC(e.d, kid, b, cvs[i])))
			w.end("emb:Bundle")
		})
	}
	w.end("ContentKeyUsageRuleList")
	return e.finish()
}

func checkBundles(bundles []*bundle.Bundle, c *config) error {
	if len(bundles) == 0 {
		return fmt.Errorf("%w: no bundles", ErrInvalid)
	}
	if len(bundles) > c.maxPeriods {
		return fmt.Errorf("%w: %d periods, limit %d", ErrTooLarge, len(bundles), c.maxPeriods)
	}
	seen := make(map[[16]byte]bool, len(bundles))
	for i, b := range bundles {
		switch {
		case b == nil:
			return fmt.Errorf("%w: bundle %d is nil", ErrInvalid, i)
		case b.ReleaseAt < 0 || b.PresentAt < b.ReleaseAt:
			return fmt.Errorf("%w: bundle %d: releaseAt %d, presentAt %d", ErrInvalid, i, b.ReleaseAt, b.PresentAt)
		case len(b.Shards) < 1 || len(b.Shards) > wire.MaxShards:
			return fmt.Errorf("%w: bundle %d has %d shards", ErrInvalid, i, len(b.Shards))
		case seen[BundleKID(b.Stream, b.Period)]:
			return fmt.Errorf("%w: stream %d period %d twice", ErrInvalid, b.Stream, b.Period)
		}
		seen[BundleKID(b.Stream, b.Period)] = true
		for j, s := range b.Shards {
			if len(s) < 1 || len(s) > wire.MaxDatagram {
				return fmt.Errorf("%w: bundle %d shard %d is %d bytes", ErrInvalid, i, j, len(s))
			}
		}
	}
	return nil
}

// bundleMAC authenticates embargo's extension element and binds it to its
// ContentKey: CPIX's ValueMAC covers only the encrypted RK, not the kid it
// sits under, so without this an RK could be moved to another period, or
// an instant or datagram changed, unnoticed until the edge opened the
// bundle. The label keeps its inputs apart from ValueMAC's.
func bundleMAC(d *delivery, kid [16]byte, b *bundle.Bundle, rkCipher []byte) []byte {
	fixed := make([]byte, 0, len(labelBundle)+16+28+2+len(rkCipher)+2)
	fixed = append(fixed, labelBundle...)
	fixed = append(fixed, kid[:]...)
	fixed = binary.BigEndian.AppendUint32(fixed, b.Stream)
	fixed = binary.BigEndian.AppendUint64(fixed, b.Period)
	fixed = binary.BigEndian.AppendUint64(fixed, uint64(b.ReleaseAt))
	fixed = binary.BigEndian.AppendUint64(fixed, uint64(b.PresentAt))
	fixed = binary.BigEndian.AppendUint16(fixed, uint16(len(rkCipher)))
	fixed = append(fixed, rkCipher...)
	fixed = binary.BigEndian.AppendUint16(fixed, uint16(len(b.Shards)))
	parts := make([][]byte, 0, 1+2*len(b.Shards))
	parts = append(parts, fixed)
	for _, s := range b.Shards {
		parts = append(parts, binary.BigEndian.AppendUint16(nil, uint16(len(s))), s)
	}
	return d.mac(parts...)
}

// DecodeBundles opens a document EncodeBundles made for recipientKey's
// certificate. It checks every ValueMAC and every bundle MAC, in constant
// time, before decrypting anything, and returns all the bundles or an
// error wrapping one of the package's sentinels, never a part.
//
// It does not verify the ANNOUNCE datagrams' origin signatures nor RK
// against its commitment: bundle.Open does, and the edge must call it on
// every bundle before using one. The document's own checks say only that
// whoever made it knew the recipient's certificate; origin authenticity
// comes from the transport and from bundle.Open.
func DecodeBundles(doc []byte, recipientKey *rsa.PrivateKey, opts ...Option) ([]*bundle.Bundle, error) {
	x, _, d, rules, err := open(doc, recipientKey, opts, perBundle, func(x *xDoc, c *config) error {
		switch keys := x.Keys.Key; {
		case len(keys) == 0:
			return fmt.Errorf("%w: no ContentKey", ErrMalformed)
		case len(keys) > c.maxPeriods || len(x.Periods.Period) > c.maxPeriods:
			return fmt.Errorf("%w: %d keys and %d periods, limit %d", ErrTooLarge, len(keys), len(x.Periods.Period), c.maxPeriods)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := x.Keys.Key
	if len(rules) != len(keys) {
		return nil, fmt.Errorf("%w: %d keys, %d usage rules", ErrMalformed, len(keys), len(rules))
	}
	type item struct {
		s   sealed
		b   *bundle.Bundle
		mac []byte
	}
	items := make([]item, len(keys))
	for i := range keys {
		s, err := sealedKey(&keys[i])
		if err != nil {
			return nil, err
		}
		r, ok := rules[s.kid]
		if !ok || len(r.x.Bundle) != 1 {
			return nil, fmt.Errorf("%w: ContentKey %s has no usage rule with one embargo Bundle", ErrMalformed, FormatUUID(s.kid))
		}
		b, mac, err := r.x.Bundle[0].bundle()
		if err != nil {
			return nil, err
		}
		if BundleKID(b.Stream, b.Period) != s.kid || r.period != periodID(b.Stream, b.Period) {
			return nil, fmt.Errorf("%w: ContentKey %s is not stream %d period %d's", ErrMalformed, FormatUUID(s.kid), b.Stream, b.Period)
		}
		items[i] = item{s: s, b: b, mac: mac}
	}
	for _, it := range items {
		if !d.verify(it.s.cv, it.s.mac) {
			return nil, fmt.Errorf("%w: ValueMAC of %s", ErrMAC, FormatUUID(it.s.kid))
		}
		if !hmac.Equal(bundleMAC(d, it.s.kid, it.b, it.s.cv), it.mac) {
			return nil, fmt.Errorf("%w: bundle MAC of %s", ErrMAC, FormatUUID(it.s.kid))
		}
	}
	out := make([]*bundle.Bundle, len(items))
	for i, it := range items {
		rk, err := d.open(it.s.cv, wire.RKLen)
		if err != nil {
			return nil, fmt.Errorf("RK of %s: %w", FormatUUID(it.s.kid), err)
		}
		copy(it.b.RK[:], rk)
		out[i] = it.b
	}
	return out, nil
}

// bundle reads the extension element: everything of a bundle but RK.
func (xb *xBundle) bundle() (*bundle.Bundle, []byte, error) {
	stream, err := number(xb.Stream, "stream", 32)
	if err != nil {
		return nil, nil, err
	}
	period, err := number(xb.Period, "period", 64)
	if err != nil {
		return nil, nil, err
	}
	release, err := number(xb.ReleaseAt, "releaseAt", 63)
	if err != nil {
		return nil, nil, err
	}
	present, err := number(xb.PresentAt, "presentAt", 63)
	if err != nil {
		return nil, nil, err
	}
	b := &bundle.Bundle{Stream: uint32(stream), Period: period, ReleaseAt: int64(release), PresentAt: int64(present)}
	what := fmt.Sprintf("stream %d period %d", b.Stream, b.Period)
	switch {
	case b.PresentAt < b.ReleaseAt:
		return nil, nil, fmt.Errorf("%w: %s: presentAt before releaseAt", ErrMalformed, what)
	case len(xb.Announce) < 1:
		return nil, nil, fmt.Errorf("%w: %s: no Announce", ErrMalformed, what)
	case len(xb.Announce) > wire.MaxShards:
		return nil, nil, fmt.Errorf("%w: %s: %d datagrams, limit %d", ErrTooLarge, what, len(xb.Announce), wire.MaxShards)
	case len(xb.MAC) != 1:
		return nil, nil, fmt.Errorf("%w: %s: %d MAC elements, want 1", ErrMalformed, what, len(xb.MAC))
	}
	b.Shards = make([][]byte, len(xb.Announce))
	for i, a := range xb.Announce {
		s, err := unb64(a, what+" Announce")
		if err != nil {
			return nil, nil, err
		}
		if len(s) < 1 || len(s) > wire.MaxDatagram {
			return nil, nil, fmt.Errorf("%w: %s: datagram of %d bytes", ErrMalformed, what, len(s))
		}
		b.Shards[i] = s
	}
	mac, err := unb64(xb.MAC[0], what+" MAC")
	if err != nil {
		return nil, nil, err
	}
	return b, mac, nil
}
