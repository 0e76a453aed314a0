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

// ForgeSet returns a whole forged set for s's (a genuine shard's) stream,
// period, geometry and key id: k+m shards of a body derived from nonce,
// each with its own index, all proving against one root of the
// attacker's, signed with garbage — what an attacker sends to make a root
// look as complete as the genuine one.
func ForgeSet(s *wire.Shard, nonce uint64) ([]*wire.Shard, error) {
	g := fec.Geometry{K: int(s.K), M: int(s.M), ShardSize: int(s.ShardSize), BodyLen: int(s.BodyLen)}
	body := make([]byte, g.BodyLen)
	for i := 0; i < len(body); i += 8 {
		var w [8]byte
		binary.BigEndian.PutUint64(w[:], nonce^uint64(i))
		copy(body[i:], w[:])
	}
	set, err := fec.Encode(body, g)
	if err != nil {
		return nil, err
	}
	out := make([]*wire.Shard, g.Shards())
	for i := range out {
		f := &wire.Shard{Header: s.Header, KeyID: s.KeyID}
		set.Fill(f, i)
		binary.BigEndian.PutUint64(f.Sig[:], nonce)
		out[i] = f
	}
	return out, nil
}

// ForgeSetDatagrams is ForgeSet of an encoded shard, each shard encoded.
func ForgeSetDatagrams(d []byte, nonce uint64) ([][]byte, error) {
	var s wire.Shard
	if err := s.Decode(d); err != nil {
		return nil, err
	}
	set, err := ForgeSet(&s, nonce)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(set))
	for i, f := range set {
		out[i] = make([]byte, f.Len())
		if _, err := f.Encode(out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
