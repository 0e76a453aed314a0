package wire

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestDecodePayloadErrors breaks one payload field at a time and checks the
// decoder names the fault.
func TestDecodePayloadErrors(t *testing.T) {
	byName := map[string]sample{}
	for _, s := range samples() {
		byName[s.name] = s
	}
	const h = HeaderLen
	cases := []struct {
		sample string
		name   string
		mutate func(b []byte) []byte
		want   error
	}{
		{"shard", "k zero", func(b []byte) []byte { b[h] = 0; return b }, ErrInconsistent},
		{"shard", "m zero", func(b []byte) []byte { b[h+1] = 0; return b }, ErrInconsistent},
		{"shard", "index past k+m", func(b []byte) []byte { b[h+2] = 5; return b }, ErrInconsistent},
		{"shard", "depth wrong", func(b []byte) []byte { b[h+3] = 2; return b }, ErrInconsistent},
		{"shard", "reserved", func(b []byte) []byte { b[h+7] = 1; return b }, ErrReserved},
		{"shard", "body longer than k shards", func(b []byte) []byte { binary.BigEndian.PutUint32(b[h+8:], 31); return b }, ErrInconsistent},
		{"shard", "empty data shard", func(b []byte) []byte { binary.BigEndian.PutUint32(b[h+8:], 20); return b }, ErrInconsistent},
		{"shard", "body over 64 KiB", func(b []byte) []byte { binary.BigEndian.PutUint32(b[h+8:], MaxBody+1); return b }, ErrOversized},
		{"shard", "shard size vs datagram", func(b []byte) []byte { binary.BigEndian.PutUint16(b[h+4:], 11); return b }, ErrLength},
		{"release", "negative releaseAt", func(b []byte) []byte { b[h+32] = 0x80; return b }, ErrInconsistent},
		{"release", "reserved", func(b []byte) []byte { b[h+55] = 1; return b }, ErrReserved},
		{"hello", "padding not zero", func(b []byte) []byte { b[len(b)-1] = 1; return b }, ErrReserved},
		{"subscribe", "no streams", func(b []byte) []byte { b[h+32] = 0; return b }, ErrInconsistent},
		{"subscribe", "count vs length", func(b []byte) []byte { b[h+32] = 3; return b }, ErrLength},
		{"subscribe", "token longer than the datagram", func(b []byte) []byte { b[h+35] = 255; return b }, ErrLength},
		{"subscribe", "token too long", func(b []byte) []byte { b[h+34] = 0xff; return b }, ErrInconsistent},
		{"subscribe", "catch-up too deep", func(b []byte) []byte { b[h+33] = MaxCatchUp + 1; return b }, ErrInconsistent},
		{"subscribed", "keepalive zero", func(b []byte) []byte { binary.BigEndian.PutUint32(b[h+16:], 0); return b }, ErrInconsistent},
		{"subscribed", "expiry before keepalive", func(b []byte) []byte { binary.BigEndian.PutUint32(b[h+20:], 1); return b }, ErrInconsistent},
		{"refused", "reserved", func(b []byte) []byte { b[h+11] = 1; return b }, ErrReserved},
		{"keepalive", "reserved", func(b []byte) []byte { b[h+15] = 1; return b }, ErrReserved},
		{"keepalive", "direction", func(b []byte) []byte { b[h+12] = 2; return b }, ErrInconsistent},
		{"leave", "direction", func(b []byte) []byte { b[h+12] = 1; return b }, ErrReserved},
		{"response", "reserved", func(b []byte) []byte { b[h+12] = 1; return b }, ErrReserved},
		{"body", "version", func(b []byte) []byte { b[0] = 9; return b }, ErrVersion},
		{"body", "payload type", func(b []byte) []byte { b[1] = 9; return b }, ErrUnknownType},
		{"body", "reserved", func(b []byte) []byte { b[3] = 1; return b }, ErrReserved},
		{"body", "presentAt before releaseAt", func(b []byte) []byte { putTime(b[24:], 5); return b }, ErrInconsistent},
		{"body", "sealed length", func(b []byte) []byte { binary.BigEndian.PutUint32(b[88:], 33); return b }, ErrLength},
		{"body", "sealed shorter than a tag", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[88:], 8)
			return append(b[:BodyFixedLen+8], make([]byte, SigLen)...)
		}, ErrTruncated},
		{"body", "oversized", func(b []byte) []byte { return append(b, make([]byte, MaxBody)...) }, ErrOversized},
		{"contentkeys", "algorithm", func(b []byte) []byte { b[1] = 2; return b }, ErrUnknownType},
		{"contentkeys", "count zero", func(b []byte) []byte { b[0] = 0; return b[:16] }, ErrInconsistent},
		{"contentkeys", "count vs length", func(b []byte) []byte { b[0] = 3; return b }, ErrLength},
		{"contentkeys", "reserved", func(b []byte) []byte { b[2] = 1; return b }, ErrReserved},
	}
	for _, c := range cases {
		s := byName[c.sample]
		b := c.mutate(encodeAll(s.value))
		if err := s.fresh().Decode(b); !errors.Is(err, c.want) {
			t.Errorf("%s/%s: got %v, want %v", c.sample, c.name, err, c.want)
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	buf := make([]byte, MaxDatagram)
	cases := []struct {
		name string
		c    codec
		want error
	}{
		{"hello under minimum", &Hello{PadLen: 1}, ErrLength},
		{"subscribe no streams", &Subscribe{}, ErrInconsistent},
		{"subscribe too many", &Subscribe{Streams: make([]uint32, MaxStreams+1)}, ErrInconsistent},
		{"subscribe catch-up too deep", &Subscribe{Streams: []uint32{1}, CatchUp: MaxCatchUp + 1}, ErrInconsistent},
		{"subscribe token too long", &Subscribe{Streams: []uint32{1}, Token: make([]byte, MaxTokenLen+1)}, ErrInconsistent},
		{"subscribed no keepalive", &Subscribed{Streams: []uint32{1}, ExpiryMs: 5}, ErrInconsistent},
		{"subscribed expiry before keepalive", &Subscribed{Streams: []uint32{1}, KeepaliveMs: 5, ExpiryMs: 4}, ErrInconsistent},
		{"session with stream", &Leave{Header: Header{Stream: 1}}, ErrInconsistent},
		{"shard bad geometry", &Shard{K: 1, M: 1, ShardSize: 4, BodyLen: 9, Data: make([]byte, 4), Proof: make([]byte, HashLen)}, ErrInconsistent},
		{"shard proof length", &Shard{K: 1, M: 1, ShardSize: 4, BodyLen: 4, Data: make([]byte, 4)}, ErrLength},
		{"release negative time", &Release{ReleaseAt: -1}, ErrInconsistent},
		{"oversized shard", &Shard{K: 1, M: 1, ShardSize: MaxDatagram, BodyLen: 4, Data: make([]byte, MaxDatagram), Proof: make([]byte, HashLen)}, ErrOversized},
		{"body no tag", &Body{PayloadType: PayloadOpaque}, ErrLength},
		{"content keys none", &ContentKeys{Alg: WrapAES256GCM}, ErrInconsistent},
	}
	for _, c := range cases {
		if _, err := c.c.Encode(buf); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestProofDepth(t *testing.T) {
	for n, want := range map[int]int{1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 8: 3, 9: 4, 29: 5, 256: 8} {
		if got := ProofDepth(n); got != want {
			t.Errorf("ProofDepth(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestZeroAllocs proves encode and decode of every type allocate nothing
// once the destination value has been used (Subscribe/Subscribed reuse
// their Streams capacity).
func TestZeroAllocs(t *testing.T) {
	for _, s := range samples() {
		b := encodeAll(s.value)
		out := make([]byte, len(b))
		dst := s.fresh()
		if err := dst.Decode(b); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = s.value.Encode(out) }); n != 0 {
			t.Errorf("%s: encode allocates %.1f times", s.name, n)
		}
		if n := testing.AllocsPerRun(100, func() { _ = dst.Decode(b) }); n != 0 {
			t.Errorf("%s: decode allocates %.1f times", s.name, n)
		}
	}
	var h Header
	b := encodeAll(samples()[1].value)
	if n := testing.AllocsPerRun(100, func() { h, _ = Peek(b) }); n != 0 {
		t.Errorf("Peek allocates %.1f times", n)
	}
	_ = h
}
