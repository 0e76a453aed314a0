package wire

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

func streamHdr(flags uint16) Header { return Header{Flags: flags, Stream: 7, Period: 42} }
func encodeAll(c codec) []byte      { b := make([]byte, c.Len()); n, _ := c.Encode(b); return b[:n] }

// samples returns one well-formed value of every message and body type.
func samples() []sample {
	return []sample{
		{"shard", &Shard{Header: streamHdr(0), K: 3, M: 2, Index: 4, ShardSize: 10, BodyLen: 25,
			KeyID: [8]byte(seq(8, 1)), Root: [32]byte(seq(32, 2)), Sig: [64]byte(seq(64, 3)), Proof: seq(3*HashLen, 4), Data: seq(10, 5)},
			func() codec { return &Shard{} }},
		// A full-size shard as the default geometry makes for a 16 KiB
		// body: what a receiver really decodes, datagram for datagram.
		{"shard-16KiB", &Shard{Header: streamHdr(0), K: 19, M: 10, Index: 23, ShardSize: 863, BodyLen: 16 << 10,
			KeyID: [8]byte(seq(8, 1)), Root: [32]byte(seq(32, 2)), Sig: [64]byte(seq(64, 3)), Proof: seq(5*HashLen, 4), Data: seq(863, 5)},
			func() codec { return &Shard{} }},
		{"release", &Release{Header: streamHdr(FlagCatchUp), RK: [32]byte(seq(32, 9)), ReleaseAt: 1_700_000_000_000_000_000, SentAt: 1_700_000_000_000_001_000, EdgeID: 3},
			func() codec { return &Release{} }},
		{"hello", &Hello{Nonce: [8]byte(seq(8, 1)), PadLen: HelloMinLen - HeaderLen - NonceLen},
			func() codec { return &Hello{} }},
		{"cookie", &Cookie{Nonce: [8]byte(seq(8, 1)), Cookie: [24]byte(seq(24, 2))},
			func() codec { return &Cookie{} }},
		{"subscribe", &Subscribe{Nonce: [8]byte(seq(8, 1)), Cookie: [24]byte(seq(24, 2)), CatchUp: 3, KeyShare: [32]byte(seq(32, 3)), Streams: []uint32{7, 8}},
			func() codec { return &Subscribe{} }},
		{"subscribe-token", &Subscribe{Nonce: [8]byte(seq(8, 1)), Cookie: [24]byte(seq(24, 2)), KeyShare: [32]byte(seq(32, 3)), Streams: []uint32{7}, Token: seq(TokenLen, 4)},
			func() codec { return &Subscribe{} }},
		{"subscribed", &Subscribed{Nonce: [8]byte(seq(8, 1)), SessionID: [8]byte(seq(8, 9)), KeepaliveMs: 10_000, ExpiryMs: 45_000,
			KeyShare: [32]byte(seq(32, 3)), SealedKey: [16]byte(seq(16, 4)), Streams: []uint32{7}},
			func() codec { return &Subscribed{} }},
		{"refused", &Refused{Nonce: [8]byte(seq(8, 1)), Reason: ReasonEdgeFull, RetryAfterMs: 500},
			func() codec { return &Refused{} }},
		{"leave", &Leave{SessionID: [8]byte(seq(8, 9)), Seq: 78, MAC: [16]byte(seq(16, 5))},
			func() codec { return &Leave{} }},
		{"keepalive", &Keepalive{SessionID: [8]byte(seq(8, 9)), Seq: 77, MAC: [16]byte(seq(16, 5))},
			func() codec { return &Keepalive{} }},
		{"keepalive-echo", &Keepalive{SessionID: [8]byte(seq(8, 9)), Seq: 77, Echo: true, MAC: [16]byte(seq(16, 6))},
			func() codec { return &Keepalive{} }},
		{"challenge", &Challenge{SessionID: [8]byte(seq(8, 9)), Cookie: [24]byte(seq(24, 2))},
			func() codec { return &Challenge{} }},
		{"response", &Response{SessionID: [8]byte(seq(8, 9)), Seq: 79, Cookie: [24]byte(seq(24, 2)), MAC: [16]byte(seq(16, 7))},
			func() codec { return &Response{} }},
		{"body", &Body{PayloadType: PayloadContentKeys, Stream: 7, Period: 42, ReleaseAt: 10, PresentAt: 20,
			KeyID: [8]byte(seq(8, 1)), Salt: [16]byte(seq(16, 2)), Commitment: [32]byte(seq(32, 3)), Sealed: seq(TagLen+16, 4), Sig: [64]byte(seq(64, 5))},
			func() codec { return &Body{} }},
		{"contentkeys", &ContentKeys{Alg: WrapAES256GCM, Nonce: [12]byte(seq(12, 1)), Entries: seq(2*KeyEntryLen, 2)},
			func() codec { return &ContentKeys{} }},
	}
}
