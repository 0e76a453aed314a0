package cpix

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math"
	"time"

	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// perPeriodKeys bounds the elements one packager period adds: up to
// wire.MaxContentKeys keys, each a dozen elements with its usage rule.
const perPeriodKeys = wire.MaxContentKeys*16 + 16

// PeriodKeys is one key period's content keys as a packager needs them to
// encrypt the period's media.
type PeriodKeys struct {
	Stream uint32
	Period uint64
	// Start and End bound the media the keys encrypt (TAI ns, Start ≥ 0,
	// End ≥ Start). They travel as ContentKeyPeriod@start and @end in UTC,
	// converted with the configured TAI offset and kept to the nanosecond,
	// so that a decoder using the same offset gets them back exactly.
	Start, End int64
	Keys       []seal.ContentKey // 1 to wire.MaxContentKeys, KIDs unique per document
}

// EncodePackagerKeys writes content keys for a packager: one ContentKey
// per key (kid the CENC KID, commonEncryptionScheme per WithScheme, the
// value encrypted and MACed as CPIX prescribes), one ContentKeyPeriod per
// period and a usage rule tying each key to its period. It writes no
// DRMSystem signaling and no track filters: a period with several keys
// needs the packager to know which track takes which, out of band.
func EncodePackagerKeys(keys []PeriodKeys, recipient *x509.Certificate, opts ...Option) ([]byte, error) {
	e, err := begin(opts, recipient, false, func(c *config) error { return checkPeriodKeys(keys, c) })
	if err != nil {
		return nil, err
	}
	w := &e.w
	w.start("ContentKeyList")
	for _, pk := range keys {
		for _, k := range pk.Keys {
			e.contentKey(k.KID, e.c.scheme, k.Key[:])
		}
	}
	w.end("ContentKeyList")
	w.start("ContentKeyPeriodList")
	for _, pk := range keys {
		e.period(periodID(pk.Stream, pk.Period), pk.Start, pk.End)
	}
	w.end("ContentKeyPeriodList")
	w.start("ContentKeyUsageRuleList")
	for _, pk := range keys {
		for _, k := range pk.Keys {
			e.rule(k.KID, periodID(pk.Stream, pk.Period))
		}
	}
	w.end("ContentKeyUsageRuleList")
	return e.finish()
}

func checkPeriodKeys(keys []PeriodKeys, c *config) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no periods", ErrInvalid)
	}
	if len(keys) > c.maxPeriods {
		return fmt.Errorf("%w: %d periods, limit %d", ErrTooLarge, len(keys), c.maxPeriods)
	}
	periods := make(map[string]bool, len(keys))
	kids := make(map[[wire.KIDLen]byte]bool)
	for i, pk := range keys {
		id := periodID(pk.Stream, pk.Period)
		switch {
		case pk.Start < 0 || pk.End < pk.Start:
			return fmt.Errorf("%w: period %d: start %d, end %d", ErrInvalid, i, pk.Start, pk.End)
		case len(pk.Keys) < 1 || len(pk.Keys) > wire.MaxContentKeys:
			return fmt.Errorf("%w: period %d has %d keys", ErrInvalid, i, len(pk.Keys))
		case periods[id]:
			return fmt.Errorf("%w: stream %d period %d twice", ErrInvalid, pk.Stream, pk.Period)
		}
		periods[id] = true
		for _, k := range pk.Keys {
			if kids[k.KID] {
				return fmt.Errorf("%w: KID %s twice", ErrInvalid, FormatUUID(k.KID))
			}
			kids[k.KID] = true
		}
	}
	return nil
}

// DecodePackagerKeys opens a document EncodePackagerKeys made for
// recipientKey's certificate: periods in document order, each with its
// keys in document order. Every ValueMAC is checked before any value is
// decrypted; the result is all periods or an error, never a part.
func DecodePackagerKeys(doc []byte, recipientKey *rsa.PrivateKey, opts ...Option) ([]PeriodKeys, error) {
	x, c, d, rules, err := open(doc, recipientKey, opts, perPeriodKeys, func(x *xDoc, c *config) error {
		switch keys, periods := x.Keys.Key, x.Periods.Period; {
		case len(keys) == 0 || len(periods) == 0:
			return fmt.Errorf("%w: %d keys, %d periods", ErrMalformed, len(keys), len(periods))
		case len(periods) > c.maxPeriods || len(keys) > c.maxPeriods*wire.MaxContentKeys:
			return fmt.Errorf("%w: %d keys and %d periods, limit %d periods", ErrTooLarge, len(keys), len(periods), c.maxPeriods)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys, periods := x.Keys.Key, x.Periods.Period
	if len(rules) != len(keys) {
		return nil, fmt.Errorf("%w: %d keys, %d usage rules", ErrMalformed, len(keys), len(rules))
	}
	out := make([]PeriodKeys, len(periods))
	index := make(map[string]int, len(periods))
	for i, p := range periods {
		pk := &out[i]
		if pk.Stream, pk.Period, err = parsePeriodID(p.ID); err != nil {
			return nil, err
		}
		if pk.Start, err = c.taiOf(p.Start, p.ID+" start"); err != nil {
			return nil, err
		}
		if pk.End, err = c.taiOf(p.End, p.ID+" end"); err != nil {
			return nil, err
		}
		if pk.End < pk.Start {
			return nil, fmt.Errorf("%w: period %s ends before it starts", ErrMalformed, p.ID)
		}
		index[p.ID] = i
	}
	all := make([]sealed, len(keys))
	owner := make([]int, len(keys))
	seen := make(map[[16]byte]bool, len(keys))
	for i := range keys {
		s, err := sealedKey(&keys[i])
		if err != nil {
			return nil, err
		}
		id, ok := rules[s.kid]
		switch {
		case seen[s.kid]:
			return nil, fmt.Errorf("%w: KID %s twice", ErrMalformed, FormatUUID(s.kid))
		case !ok:
			return nil, fmt.Errorf("%w: KID %s has no usage rule", ErrMalformed, FormatUUID(s.kid))
		}
		seen[s.kid] = true
		all[i], owner[i] = s, index[id]
	}
	counts := make([]int, len(out))
	for _, o := range owner {
		counts[o]++
	}
	for i, n := range counts {
		if n < 1 || n > wire.MaxContentKeys {
			return nil, fmt.Errorf("%w: period %s has %d keys", ErrMalformed, periods[i].ID, n)
		}
	}
	for _, s := range all {
		if !d.verify(s.cv, s.mac) {
			return nil, fmt.Errorf("%w: ValueMAC of %s", ErrMAC, FormatUUID(s.kid))
		}
	}
	for i, s := range all {
		v, err := d.open(s.cv, wire.ContentKeyLen)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", FormatUUID(s.kid), err)
		}
		k := seal.ContentKey{KID: s.kid}
		copy(k.Key[:], v)
		out[owner[i]].Keys = append(out[owner[i]].Keys, k)
	}
	return out, nil
}

// taiOf reads an xs:dateTime (with a zone) as TAI ns ≥ 0.
func (c *config) taiOf(s, what string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return 0, fmt.Errorf("%w: %s %.40q", ErrMalformed, what, s)
	}
	if t.UnixNano() > math.MaxInt64-int64(c.tai) || c.tai.FromTime(t) < 0 {
		return 0, fmt.Errorf("%w: %s %.40q out of range", ErrMalformed, what, s)
	}
	return c.tai.FromTime(t), nil
}
