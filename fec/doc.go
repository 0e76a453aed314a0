// Package fec splits an ANNOUNCE body into Reed–Solomon shards and puts it
// back together (PROTOCOL.md §3.1, §7).
//
// A body of up to 64 KiB becomes k data shards and m parity shards
// (github.com/klauspost/reedsolomon, GF(2^8), the systematic Vandermonde
// code), so that any k of the k+m datagrams rebuild it. Reed–Solomon cannot
// tell a forged shard from a genuine one, so every shard also carries a
// Merkle proof to a root that the origin signed: the Assembler verifies the
// root's signature once per period and each shard's proof on arrival, and
// stores only shards that pass. An attacker who injects shards can therefore
// neither get a forged body rebuilt nor keep genuine shards from completing
// one. Memory is bounded: periods in flight, bytes per period, and the
// completed periods remembered for duplicate suppression.
package fec
