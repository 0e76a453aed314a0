package fec

import (
	"crypto/sha256"
	"hash"

	"github.com/embargo-live/embargo/wire"
)

// Merkle tree over a shard set (PROTOCOL.md §7): leaf = SHA-256(0x00 ‖
// shard), node = SHA-256(0x01 ‖ left ‖ right); the leaves are padded to a
// power of two with all-zero hashes, which no shard can hash to.

type digest = [wire.HashLen]byte

// leafPrefix is the leaf domain byte, a package value so that hashing a
// shard on the receive path allocates nothing.
var leafPrefix = []byte{0x00}

// leafHasher hashes shards into leaves with a reused hash state and sum
// buffer: anything passed through hash.Hash escapes, so per-call buffers
// would allocate for every shard received.
type leafHasher struct {
	h   hash.Hash
	sum []byte
}

func newLeafHasher() *leafHasher {
	return &leafHasher{h: sha256.New(), sum: make([]byte, 0, sha256.Size)}
}

func (l *leafHasher) leaf(shard []byte) digest {
	l.h.Reset()
	l.h.Write(leafPrefix)
	l.h.Write(shard)
	l.sum = l.h.Sum(l.sum[:0])
	return digest(l.sum)
}

func nodeHash(left, right *digest) digest {
	var buf [1 + 2*wire.HashLen]byte
	buf[0] = 0x01
	copy(buf[1:], left[:])
	copy(buf[1+wire.HashLen:], right[:])
	return sha256.Sum256(buf[:])
}

// merkle builds the tree over leaves and returns the root and, for every
// leaf, its proof: the sibling hashes from the leaf level up, concatenated.
func merkle(leaves []digest) (root digest, proofs [][]byte) {
	depth := wire.ProofDepth(len(leaves))
	level := make([]digest, 1<<depth)
	copy(level, leaves)
	proofs = make([][]byte, len(leaves))
	for i := range proofs {
		proofs[i] = make([]byte, 0, depth*wire.HashLen)
	}
	for shift := 0; len(level) > 1; shift++ {
		for i := range proofs {
			sib := level[(i>>shift)^1]
			proofs[i] = append(proofs[i], sib[:]...)
		}
		next := make([]digest, len(level)/2)
		for j := range next {
			next[j] = nodeHash(&level[2*j], &level[2*j+1])
		}
		level = next
	}
	return level[0], proofs
}

// verifyProof reports whether leaf, at index, hashes up through proof to
// root.
func verifyProof(root *digest, index int, leaf digest, proof []byte) bool {
	h, ok := proofRoot(index, leaf, proof)
	return ok && h == *root
}

// proofRoot is the root that leaf, at index, hashes up to through proof;
// false if the index is not a leaf of a tree that deep.
func proofRoot(index int, leaf digest, proof []byte) (digest, bool) {
	if len(proof)%wire.HashLen != 0 || index>>(len(proof)/wire.HashLen) != 0 {
		return digest{}, false
	}
	h := leaf
	for off := 0; off+wire.HashLen <= len(proof); off += wire.HashLen {
		var sib digest
		copy(sib[:], proof[off:off+wire.HashLen])
		if index&1 == 0 {
			h = nodeHash(&h, &sib)
		} else {
			h = nodeHash(&sib, &h)
		}
		index >>= 1
	}
	return h, true
}

// ProofRoot returns the Merkle root that shard s's data and proof hash up
// to (PROTOCOL.md §7.2), whatever root s claims; false if s's index is not
// a leaf of a tree as deep as its proof. Tests use it to build shards that
// prove against a root of their own.
func ProofRoot(s *wire.Shard) ([wire.HashLen]byte, bool) {
	return proofRoot(int(s.Index), newLeafHasher().leaf(s.Data), s.Proof)
}
