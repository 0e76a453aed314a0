package wire

import "bytes"

// codec is what every message and body type implements.
type codec interface {
	Len() int
	Encode([]byte) (int, error)
	Decode([]byte) error
}

// sample is one well-formed value of a type, a fresh zero value of the same
// type to decode into, and the type's name.
type sample struct {
	name  string
	value codec
	fresh func() codec
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func arr8(start byte) (a [8]byte)   { copy(a[:], seq(8, start)); return }
func arr24(start byte) (a [24]byte) { copy(a[:], seq(24, start)); return }
func arr32(start byte) (a [32]byte) { copy(a[:], seq(32, start)); return }
func arr64(start byte) (a [64]byte) { copy(a[:], seq(64, start)); return }
func arr16(start byte) (a [16]byte) { copy(a[:], seq(16, start)); return }
func arr12(start byte) (a [12]byte) { copy(a[:], seq(12, start)); return }
func streamHdr(flags uint16) Header { return Header{Flags: flags, Stream: 7, Period: 42} }
func encodeAll(c codec) []byte      { b := make([]byte, c.Len()); n, _ := c.Encode(b); return b[:n] }
func equalBytes(a, b []byte) bool   { return bytes.Equal(a, b) }

// samples returns one well-formed value of every message and body type.
func samples() []sample {
	return []sample{
		{"shard", &Shard{Header: streamHdr(0), K: 3, M: 2, Index: 4, ShardSize: 10, BodyLen: 25,
			KeyID: arr8(1), Root: arr32(2), Sig: arr64(3), Proof: seq(3*HashLen, 4), Data: seq(10, 5)},
			func() codec { return &Shard{} }},
		{"release", &Release{Header: streamHdr(FlagCatchUp), RK: arr32(9), ReleaseAt: 1_700_000_000_000_000_000, SentAt: 1_700_000_000_000_001_000, EdgeID: 3},
			func() codec { return &Release{} }},
		{"hello", &Hello{Nonce: arr8(1), PadLen: HelloMinLen - HeaderLen - NonceLen},
			func() codec { return &Hello{} }},
		{"cookie", &Cookie{Nonce: arr8(1), Cookie: arr24(2)},
			func() codec { return &Cookie{} }},
		{"subscribe", &Subscribe{Nonce: arr8(1), Cookie: arr24(2), CatchUp: 3, Streams: []uint32{7, 8}},
			func() codec { return &Subscribe{} }},
		{"subscribed", &Subscribed{Nonce: arr8(1), SessionID: arr8(9), KeepaliveMs: 10_000, ExpiryMs: 45_000, Streams: []uint32{7}},
			func() codec { return &Subscribed{} }},
		{"refused", &Refused{Nonce: arr8(1), Reason: ReasonEdgeFull, RetryAfterMs: 500},
			func() codec { return &Refused{} }},
		{"leave", &Leave{SessionID: arr8(9)},
			func() codec { return &Leave{} }},
		{"keepalive", &Keepalive{SessionID: arr8(9), Seq: 77},
			func() codec { return &Keepalive{} }},
		{"body", &Body{PayloadType: PayloadContentKeys, Stream: 7, Period: 42, ReleaseAt: 10, PresentAt: 20,
			KeyID: arr8(1), Salt: arr16(2), Commitment: arr32(3), Sealed: seq(TagLen+16, 4), Sig: arr64(5)},
			func() codec { return &Body{} }},
		{"contentkeys", &ContentKeys{Alg: WrapAES256GCM, Nonce: arr12(1), Entries: seq(2*KeyEntryLen, 2)},
			func() codec { return &ContentKeys{} }},
	}
}
