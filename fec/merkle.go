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

func leafHash(h hash.Hash, shard []byte) digest {
	var d digest
	h.Reset()
	h.Write([]byte{0x00})
	h.Write(shard)
	h.Sum(d[:0])
	return d
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
	if len(proof)%wire.HashLen != 0 || index>>(len(proof)/wire.HashLen) != 0 {
		return false // the index must be a leaf of a tree this deep
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
	return h == *root
}
