package fec

import (
	"errors"
	"fmt"

	"github.com/klauspost/reedsolomon"

	"github.com/embargo-live/embargo/wire"
)

// Sentinel errors.
var (
	// ErrGeometry: a geometry that cannot describe the body (see
	// wire.CheckGeometry), or that does not fit the datagram limit.
	ErrGeometry = errors.New("fec: bad geometry")
	// ErrForged: the shard's root signature does not verify.
	ErrForged = errors.New("fec: shard root not signed by a trusted origin")
	// ErrBadProof: the shard does not hash up to its signed root.
	ErrBadProof = errors.New("fec: shard fails its Merkle proof")
	// ErrRepeatForged: a root whose check already failed; it is not checked
	// again. It wraps ErrForged.
	ErrRepeatForged = fmt.Errorf("%w (already refused)", ErrForged)
	// ErrOtherRoot: a shard of a root other than the one its period was
	// started with (verified), or than the one the period's check just
	// went to; it is not checked.
	ErrOtherRoot = errors.New("fec: not the period's verified root")
	// ErrDeferred: the period's shard roots are not verified yet and the
	// verification budget went to another root, or is spent for now; the
	// carousel's later rounds bring the shard again.
	ErrDeferred = errors.New("fec: root check deferred by the verification budget")
	// ErrCheckPending: the shard's root is being checked by the caller
	// (WithAsyncChecks); the shard is held with the check.
	ErrCheckPending = errors.New("fec: root check pending")
	// ErrFuture: the period is beyond the announce horizon of its stream's
	// newest verified period.
	ErrFuture = errors.New("fec: period beyond the announce horizon")
	// ErrDuplicate: this shard index is already held.
	ErrDuplicate = errors.New("fec: duplicate shard")
	// ErrComplete: the period was already rebuilt.
	ErrComplete = errors.New("fec: period already rebuilt")
	// ErrStale: the period is too far below its stream's newest.
	ErrStale = errors.New("fec: period too old")
	// ErrBusy: a new period would exceed the periods-in-flight or held-bytes
	// budget; it is refused rather than evicting one in progress.
	ErrBusy = errors.New("fec: assembler at its memory bound")
	// ErrTooLarge: the period's shards would exceed the per-period byte
	// bound.
	ErrTooLarge = errors.New("fec: period exceeds memory bound")
)

// Geometry is how a body is cut: K data shards and M parity shards of
// ShardSize bytes holding BodyLen body bytes.
type Geometry struct {
	K, M      int
	ShardSize int
	BodyLen   int
}

// Shards is K+M.
func (g Geometry) Shards() int { return g.K + g.M }

// DatagramLen is the size of each of the geometry's ANNOUNCE datagrams.
func (g Geometry) DatagramLen() int { return wire.ShardLen(g.K, g.M, g.ShardSize) }

// Check validates g (wire.CheckGeometry).
func (g Geometry) Check() error {
	if err := wire.CheckGeometry(g.K, g.M, g.ShardSize, g.BodyLen); err != nil {
		return fmt.Errorf("%w: k=%d m=%d size=%d body=%d: %w", ErrGeometry, g.K, g.M, g.ShardSize, g.BodyLen, err)
	}
	return nil
}

// Defaults for ChooseGeometry.
const (
	// DefaultParityPercent is m as a percentage of k, rounded up.
	DefaultParityPercent = 50
	// DefaultMinParity is the fewest parity shards: with k = 1 (a body that
	// fits one datagram) that is two extra copies.
	DefaultMinParity = 2
)

// ChooseGeometry picks the fewest data shards whose datagrams fit
// maxDatagram, with m = max(minParity, ceil(k·parityPercent/100)) parity
// shards, and balanced shard sizes (the last data shard is as full as the
// others, within one byte per shard).
func ChooseGeometry(bodyLen, maxDatagram, parityPercent, minParity int) (Geometry, error) {
	if bodyLen < 1 || bodyLen > wire.MaxBody || parityPercent < 0 || minParity < 1 {
		return Geometry{}, fmt.Errorf("%w: body %d bytes, parity %d%%, min parity %d", ErrGeometry, bodyLen, parityPercent, minParity)
	}
	for k := 1; k < wire.MaxShards; k++ {
		m := max(minParity, (k*parityPercent+99)/100)
		if k+m > wire.MaxShards {
			break
		}
		g := Geometry{K: k, M: m, ShardSize: (bodyLen + k - 1) / k, BodyLen: bodyLen}
		if g.DatagramLen() <= maxDatagram && g.Check() == nil {
			return g, nil
		}
	}
	return Geometry{}, fmt.Errorf("%w: a %d-byte body does not fit %d-byte datagrams", ErrGeometry, bodyLen, maxDatagram)
}

// Set is a body cut into an authenticated shard set: the shards, their
// Merkle root, and each shard's proof. The origin signs the root
// (seal.SignShardRoot); edges rebuild the same set from the body and check
// the origin's signature before sending it.
type Set struct {
	Geometry
	Root   [wire.HashLen]byte
	Shards [][]byte // K+M shards of ShardSize bytes; data shards first
	Proofs [][]byte // per shard, ProofDepth(K+M) sibling hashes
}

// Encode cuts body into g's shard set. Encoding is deterministic: the same
// body and geometry give the same shards and root on every edge.
func Encode(body []byte, g Geometry) (*Set, error) {
	if g.BodyLen != len(body) {
		return nil, fmt.Errorf("%w: geometry says %d body bytes, have %d", ErrGeometry, g.BodyLen, len(body))
	}
	if err := g.Check(); err != nil {
		return nil, err
	}
	enc, err := reedsolomon.New(g.K, g.M)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGeometry, err)
	}
	backing := make([]byte, g.Shards()*g.ShardSize)
	copy(backing, body) // data shards, zero-padded
	shards := make([][]byte, g.Shards())
	for i := range shards {
		shards[i] = backing[i*g.ShardSize : (i+1)*g.ShardSize : (i+1)*g.ShardSize]
	}
	if err := enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("fec: encode: %w", err)
	}
	h := newLeafHasher()
	leaves := make([]digest, len(shards))
	for i, s := range shards {
		leaves[i] = h.leaf(s)
	}
	root, proofs := merkle(leaves)
	return &Set{Geometry: g, Root: root, Shards: shards, Proofs: proofs}, nil
}

// Fill sets the FEC fields of dst for shard i (geometry, index, root, proof
// and data, the latter two aliasing s). The caller sets the header's
// stream and period and the origin's KeyID and Sig.
func (s *Set) Fill(dst *wire.Shard, i int) {
	dst.K, dst.M, dst.Index = uint8(s.K), uint8(s.M), uint8(i)
	dst.ShardSize = uint16(s.ShardSize)
	dst.BodyLen = uint32(s.BodyLen)
	dst.Root = s.Root
	dst.Proof = s.Proofs[i]
	dst.Data = s.Shards[i]
}
