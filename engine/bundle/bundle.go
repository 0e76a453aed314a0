package bundle

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// ErrInvalid is wrapped by every reason Open rejects a bundle for.
var ErrInvalid = errors.New("bundle: invalid")

// Bundle is one key period as an edge needs it. RK is the period's secret:
// whoever holds a bundle can release early, so bundles travel only between
// the origin and edges, over authenticated channels.
type Bundle struct {
	Stream    uint32
	Period    uint64
	ReleaseAt int64 // TAI ns: RK may be sent at this instant, never before
	PresentAt int64 // TAI ns
	RK        [wire.RKLen]byte
	// Shards are the period's k+m ANNOUNCE datagrams, encoded.
	Shards [][]byte
}

// Opened is a bundle that passed Open: its decoded body alongside.
type Opened struct {
	*Bundle
	Body    []byte    // the rebuilt ANNOUNCE body
	Decoded wire.Body // Body, decoded
}

// Open checks b completely, as a receiver would: every shard decodes, names
// b's stream and period and belongs to one set whose root the ring trusts;
// the shards rebuild a body signed by a trusted key with b's stream, period
// and instants; and RK opens the body's commitment.
func Open(b *Bundle, ring *seal.KeyRing) (*Opened, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil", ErrInvalid)
	}
	if b.PresentAt < b.ReleaseAt {
		return nil, fmt.Errorf("%w: presentAt before releaseAt", ErrInvalid)
	}
	body, err := rebuild(b, ring)
	if err != nil {
		return nil, err
	}
	o := &Opened{Bundle: b, Body: body}
	d := &o.Decoded
	if err := d.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrInvalid, err)
	}
	if err := ring.VerifyAnnounce(body, d); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrInvalid, err)
	}
	switch {
	case d.Stream != b.Stream || d.Period != b.Period:
		return nil, fmt.Errorf("%w: body names stream %d period %d", ErrInvalid, d.Stream, d.Period)
	case d.ReleaseAt != b.ReleaseAt || d.PresentAt != b.PresentAt:
		return nil, fmt.Errorf("%w: body's instants differ from the bundle's", ErrInvalid)
	case !seal.CheckRK(d, &b.RK):
		return nil, fmt.Errorf("%w: RK does not open the commitment", ErrInvalid)
	}
	return o, nil
}

// rebuild assembles the body from the shards, then re-encodes it and
// requires every datagram to be byte for byte what the origin's encoder
// makes: a bundle with one bad shard is refused even when k good ones
// rebuild it, because receivers must never be sent a datagram they drop.
func rebuild(b *Bundle, ring *seal.KeyRing) ([]byte, error) {
	if len(b.Shards) == 0 {
		return nil, fmt.Errorf("%w: no shards", ErrInvalid)
	}
	var first wire.Shard
	if err := first.Decode(b.Shards[0]); err != nil {
		return nil, fmt.Errorf("%w: shard 0: %w", ErrInvalid, err)
	}
	if first.Stream != b.Stream || first.Period != b.Period {
		return nil, fmt.Errorf("%w: shards name stream %d period %d", ErrInvalid, first.Stream, first.Period)
	}
	g := fec.Geometry{K: int(first.K), M: int(first.M), ShardSize: int(first.ShardSize), BodyLen: int(first.BodyLen)}
	if g.Shards() != len(b.Shards) {
		return nil, fmt.Errorf("%w: %d shards for a k=%d+m=%d set", ErrInvalid, len(b.Shards), g.K, g.M)
	}
	a := fec.NewAssembler(ring)
	var s wire.Shard
	var body []byte
	for i := 0; body == nil && i < len(b.Shards); i++ {
		if err := s.Decode(b.Shards[i]); err != nil {
			return nil, fmt.Errorf("%w: shard %d: %w", ErrInvalid, i, err)
		}
		out, err := a.Add(&s)
		if err != nil {
			return nil, fmt.Errorf("%w: shard %d: %w", ErrInvalid, i, err)
		}
		body = out
	}
	if body == nil {
		return nil, fmt.Errorf("%w: shards do not rebuild a body", ErrInvalid)
	}
	want, err := encode(body, g, &first)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for i := range want {
		if !bytes.Equal(want[i], b.Shards[i]) {
			return nil, fmt.Errorf("%w: shard %d is not the origin's encoding", ErrInvalid, i)
		}
	}
	return body, nil
}
