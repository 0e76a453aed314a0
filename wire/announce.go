package wire

import (
	"encoding/binary"
	"math/bits"
)

// ANNOUNCE shard limits. See PROTOCOL.md §3.1.
const (
	// MaxShards is the most shards (k+m) one body is split into: Reed–Solomon
	// over GF(2^8).
	MaxShards = 256
	// MaxBody is the largest ANNOUNCE body, 64 KiB.
	MaxBody = 64 << 10
	// HashLen is the size of a Merkle hash (SHA-256).
	HashLen = 32
	// SigLen is the size of an Ed25519 signature.
	SigLen = 64
	// KeyIDLen is the size of a signing-key id.
	KeyIDLen = 8
	// ShardFixedLen is the size of an ANNOUNCE payload before its proof.
	ShardFixedLen = 116
)

// Shard is one ANNOUNCE datagram: one of the k+m Reed–Solomon shards of a
// period's ANNOUNCE body, with the Merkle proof that ties it to a root the
// origin signed (PROTOCOL.md §3.1).
type Shard struct {
	Header
	K         uint8  // data shards, ≥ 1
	M         uint8  // parity shards, ≥ 1; K+M ≤ MaxShards
	Index     uint8  // this shard, < K+M; data shards first
	ShardSize uint16 // bytes per shard
	BodyLen   uint32 // body bytes the K data shards hold, then zero padding
	KeyID     [KeyIDLen]byte
	Root      [HashLen]byte
	Sig       [SigLen]byte // origin's Ed25519 signature over the root message
	Proof     []byte       // ProofDepth(K+M) sibling hashes, leaf level first
	Data      []byte       // ShardSize bytes
}

// ProofDepth is the number of sibling hashes in the Merkle proof of a tree
// with n leaves: ceil(log2(n)), 0 for a single leaf.
func ProofDepth(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// Shards returns K+M as an int.
func (s *Shard) Shards() int { return int(s.K) + int(s.M) }

// ShardLen is the datagram size of a shard of the given geometry.
func ShardLen(k, m, shardSize int) int {
	return HeaderLen + ShardFixedLen + ProofDepth(k+m)*HashLen + shardSize
}

// CheckGeometry reports whether k data and m parity shards of shardSize
// bytes describe a body of bodyLen bytes with no empty data shard.
func CheckGeometry(k, m, shardSize, bodyLen int) error {
	switch {
	case k < 1 || m < 1 || k+m > MaxShards:
		return ErrInconsistent
	case shardSize < 1 || shardSize > MaxDatagram:
		return ErrInconsistent
	case bodyLen < 1:
		return ErrInconsistent
	case bodyLen > MaxBody:
		return ErrOversized
	case k*shardSize < bodyLen || (k-1)*shardSize >= bodyLen:
		return ErrInconsistent
	}
	return nil
}

// Len is the encoded size of s.
func (s *Shard) Len() int { return HeaderLen + ShardFixedLen + len(s.Proof) + len(s.Data) }

// Encode writes s into b and returns the number of bytes written.
func (s *Shard) Encode(b []byte) (int, error) {
	n := ShardFixedLen + len(s.Proof) + len(s.Data)
	if err := checkEncode(b, &s.Header, n); err != nil {
		return 0, err
	}
	if err := s.Validate(); err != nil {
		return 0, err
	}
	encodeHeader(b, &s.Header, TypeAnnounce, n)
	p := b[HeaderLen:]
	p[0], p[1], p[2] = s.K, s.M, s.Index
	p[3] = uint8(len(s.Proof) / HashLen)
	binary.BigEndian.PutUint16(p[4:], s.ShardSize)
	binary.BigEndian.PutUint16(p[6:], 0)
	binary.BigEndian.PutUint32(p[8:], s.BodyLen)
	copy(p[12:20], s.KeyID[:])
	copy(p[20:52], s.Root[:])
	copy(p[52:116], s.Sig[:])
	copy(p[116:], s.Proof)
	copy(p[116+len(s.Proof):], s.Data)
	return HeaderLen + n, nil
}

// Validate checks s's fields against each other: the geometry, the index,
// and the proof and data lengths. Decode and Encode call it; a consumer of
// a hand-built Shard calls it before trusting one.
func (s *Shard) Validate() error {
	if err := CheckGeometry(int(s.K), int(s.M), int(s.ShardSize), int(s.BodyLen)); err != nil {
		return err
	}
	if int(s.Index) >= s.Shards() {
		return ErrInconsistent
	}
	if len(s.Proof) != ProofDepth(s.Shards())*HashLen || len(s.Data) != int(s.ShardSize) {
		return ErrLength
	}
	return nil
}

// Decode parses an ANNOUNCE datagram into s. Proof and Data alias b.
func (s *Shard) Decode(b []byte) error {
	p, err := decodeHeader(b, TypeAnnounce, &s.Header)
	if err != nil {
		return err
	}
	if len(p) < ShardFixedLen {
		return ErrTruncated
	}
	s.K, s.M, s.Index = p[0], p[1], p[2]
	depth := int(p[3])
	s.ShardSize = binary.BigEndian.Uint16(p[4:])
	if binary.BigEndian.Uint16(p[6:]) != 0 {
		return ErrReserved
	}
	s.BodyLen = binary.BigEndian.Uint32(p[8:])
	if depth != ProofDepth(s.Shards()) {
		return ErrInconsistent
	}
	if len(p) != ShardFixedLen+depth*HashLen+int(s.ShardSize) {
		return ErrLength
	}
	copy(s.KeyID[:], p[12:20])
	copy(s.Root[:], p[20:52])
	copy(s.Sig[:], p[52:116])
	s.Proof = p[116 : 116+depth*HashLen]
	s.Data = p[116+depth*HashLen:]
	return s.Validate()
}
