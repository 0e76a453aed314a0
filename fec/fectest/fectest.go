// Package fectest forges ANNOUNCE shards for tests of assemblers and
// receivers: shards that pass every check but the root signature, which is
// what an attacker who sees the genuine set can send.
package fectest

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/wire"
)

// Forge returns a copy of s (a genuine shard) that keeps its stream,
// period, geometry, index, data and key id but carries a proof of its own,
// derived from nonce, up to a root of its own, signed with garbage. Each
// nonce gives another root; the same nonce, the same shard. Only a
// signature check refuses it.
func Forge(s *wire.Shard, nonce uint64) *wire.Shard {
	f := *s
	f.Proof = slices.Clone(s.Proof)
	for i := 0; i < len(f.Proof); i += wire.HashLen {
		var seed [16]byte
		binary.BigEndian.PutUint64(seed[:], nonce)
		binary.BigEndian.PutUint64(seed[8:], uint64(i))
		h := sha256.Sum256(seed[:])
		copy(f.Proof[i:], h[:])
	}
	f.Root, _ = fec.ProofRoot(&f)
	f.Sig = [wire.SigLen]byte{}
	binary.BigEndian.PutUint64(f.Sig[:], nonce)
	return &f
}

// ForgeDatagram is Forge of an encoded shard, encoded, appended to b.
func ForgeDatagram(b, d []byte, nonce uint64) ([]byte, error) {
	var s wire.Shard
	if err := s.Decode(d); err != nil {
		return nil, err
	}
	f := Forge(&s, nonce)
	out := slices.Grow(b, f.Len())[:len(b)+f.Len()]
	if _, err := f.Encode(out[len(b):]); err != nil {
		return nil, err
	}
	return out, nil
}
