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
	// ReleaseAt is when the period's keys reach viewers (TAI ns, ≥ 0):
	// media encrypted with them must not be presented before it. It
	// travels exactly in embargo's extension of each key's usage rule.
	ReleaseAt int64
	// Keys are 1 to MaxTrackKeys keys, KIDs unique per document; key i
	// encrypts the tracks of TrackOf(i, len(Keys)).
	Keys []seal.ContentKey
}

// EncodePackagerKeys writes content keys for a packager: one ContentKey
// per key (kid the CENC KID, commonEncryptionScheme per WithScheme, the
// value encrypted and MACed as CPIX prescribes), one ContentKeyPeriod per
// period (index the period number) and a usage rule tying each key to its
// period and its tracks (TrackOf), so that exactly one key matches each
// content key context, with the period's release instant in embargo's
// extension. It writes no DRMSystem signaling (SPEKE responses do).
func EncodePackagerKeys(keys []PeriodKeys, recipient *x509.Certificate, opts ...Option) ([]byte, error) {
	e, err := begin(opts, recipient, true, func(c *config) error { return checkPeriodKeys(keys, c) })
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
		e.period(periodID(pk.Stream, pk.Period), pk.Period, pk.Start, pk.End)
	}
	w.end("ContentKeyPeriodList")
	w.start("ContentKeyUsageRuleList")
	for _, pk := range keys {
		for i, k := range pk.Keys {
			e.rule(k.KID, periodID(pk.Stream, pk.Period), TrackOf(i, len(pk.Keys)), func() { e.release(pk.ReleaseAt) })
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
		case pk.Start < 0 || pk.End < pk.Start || pk.ReleaseAt < 0:
			return fmt.Errorf("%w: period %d: start %d, end %d, releaseAt %d", ErrInvalid, i, pk.Start, pk.End, pk.ReleaseAt)
		case len(pk.Keys) < 1 || len(pk.Keys) > MaxTrackKeys:
			return fmt.Errorf("%w: period %d has %d keys, want 1 (all tracks) or 2 (video, audio)", ErrInvalid, i, len(pk.Keys))
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
		case len(periods) > c.maxPeriods || len(keys) > c.maxPeriods*MaxTrackKeys:
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
	tracks := make([]Track, len(keys))
	released := make([]bool, len(out))
	seen := make(map[[16]byte]bool, len(keys))
	for i := range keys {
		s, err := sealedKey(&keys[i])
		if err != nil {
			return nil, err
		}
		r, ok := rules[s.kid]
		switch {
		case seen[s.kid]:
			return nil, fmt.Errorf("%w: KID %s twice", ErrMalformed, FormatUUID(s.kid))
		case !ok:
			return nil, fmt.Errorf("%w: KID %s has no usage rule", ErrMalformed, FormatUUID(s.kid))
		case len(r.x.Release) != 1:
			return nil, fmt.Errorf("%w: KID %s: %d embargo Release elements, want 1", ErrMalformed, FormatUUID(s.kid), len(r.x.Release))
		}
		at, err := number(r.x.Release[0].ReleaseAt, "releaseAt", 63)
		if err != nil {
			return nil, err
		}
		o := &out[index[r.period]]
		if released[index[r.period]] && o.ReleaseAt != int64(at) {
			return nil, fmt.Errorf("%w: period %s: keys with different release instants", ErrMalformed, r.period)
		}
		o.ReleaseAt, released[index[r.period]] = int64(at), true
		seen[s.kid] = true
		all[i], owner[i], tracks[i] = s, index[r.period], r.track
	}
	counts := make([]int, len(out))
	for _, o := range owner {
		counts[o]++
	}
	for i, n := range counts {
		if n < 1 || n > MaxTrackKeys {
			return nil, fmt.Errorf("%w: period %s has %d keys", ErrMalformed, periods[i].ID, n)
		}
	}
	// A lone key takes every track, a pair splits them (usage has made
	// sure the two differ).
	for i := range all {
		if (counts[owner[i]] == 1) != (tracks[i] == TrackAll) {
			return nil, fmt.Errorf("%w: period %s: key %s's tracks do not fit its period's keys", ErrMalformed, periods[owner[i]].ID, FormatUUID(all[i].kid))
		}
	}
	for i, n := range counts {
		out[i].Keys = make([]seal.ContentKey, n)
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
		// Keys come back in TrackOf order, whatever the document's.
		k := &out[owner[i]].Keys[max(0, int(tracks[i])-int(TrackVideo))]
		k.KID = s.kid
		copy(k.Key[:], v)
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
