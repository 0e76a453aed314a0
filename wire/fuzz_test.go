package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// fuzzDecoder fuzzes one decoder: seeded with real encodings of every type
// (so mutations cross types), it must never panic, and whatever it accepts
// must re-encode to exactly the same bytes.
func fuzzDecoder(f *testing.F, fresh func() codec) {
	for _, s := range samples() {
		f.Add(encodeAll(s.value))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := fresh()
		if err := m.Decode(b); err != nil {
			return
		}
		if m.Len() != len(b) {
			t.Fatalf("accepted %d bytes, Len says %d", len(b), m.Len())
		}
		if hm, ok := m.(interface{ header() *Header }); ok && hm.header().Flags&^knownFlags != 0 {
			// Receivers keep undefined advisory flags; senders may not set them.
			if _, err := m.Encode(make([]byte, m.Len())); err != ErrFlags {
				t.Fatalf("encoding undefined flags %#x: got %v", hm.header().Flags, err)
			}
			hm.header().Flags &= knownFlags
			b = bytes.Clone(b)
			binary.BigEndian.PutUint16(b[offFlags:], hm.header().Flags)
		}
		out := make([]byte, m.Len())
		n, err := m.Encode(out)
		if err != nil {
			t.Fatalf("accepted input does not re-encode: %v", err)
		}
		if !bytes.Equal(out[:n], b) {
			t.Fatalf("round trip differs:\n in %x\nout %x", b, out[:n])
		}
	})
}

func FuzzShard(f *testing.F)      { fuzzDecoder(f, func() codec { return &Shard{} }) }
func FuzzRelease(f *testing.F)    { fuzzDecoder(f, func() codec { return &Release{} }) }
func FuzzHello(f *testing.F)      { fuzzDecoder(f, func() codec { return &Hello{} }) }
func FuzzCookie(f *testing.F)     { fuzzDecoder(f, func() codec { return &Cookie{} }) }
func FuzzSubscribe(f *testing.F)  { fuzzDecoder(f, func() codec { return &Subscribe{} }) }
func FuzzSubscribed(f *testing.F) { fuzzDecoder(f, func() codec { return &Subscribed{} }) }
func FuzzRefused(f *testing.F)    { fuzzDecoder(f, func() codec { return &Refused{} }) }
func FuzzLeave(f *testing.F)      { fuzzDecoder(f, func() codec { return &Leave{} }) }
func FuzzKeepalive(f *testing.F)  { fuzzDecoder(f, func() codec { return &Keepalive{} }) }
func FuzzChallenge(f *testing.F)  { fuzzDecoder(f, func() codec { return &Challenge{} }) }
func FuzzResponse(f *testing.F)   { fuzzDecoder(f, func() codec { return &Response{} }) }
func FuzzBody(f *testing.F)       { fuzzDecoder(f, func() codec { return &Body{} }) }

// FuzzBodyHead: whatever the fixed part of a body DecodeHead accepts is
// what an encoder writes for those fields, and a whole body's head agrees
// with its full decode.
func FuzzBodyHead(f *testing.F) {
	for _, s := range samples() {
		f.Add(encodeAll(s.value))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Body
		if err := h.DecodeHead(b); err != nil {
			return
		}
		h.Sealed = make([]byte, TagLen)
		out := make([]byte, h.Len())
		if _, err := h.Encode(out); err != nil {
			t.Fatalf("accepted head does not encode: %v", err)
		}
		if !bytes.Equal(out[:88], b[:88]) {
			t.Fatalf("head round trip differs:\n in %x\nout %x", b[:88], out[:88])
		}
		var full Body
		if full.Decode(b) == nil && (full.Stream != h.Stream || full.Period != h.Period || full.Commitment != h.Commitment || full.Salt != h.Salt) {
			t.Fatalf("head %+v disagrees with body %+v", h, full)
		}
	})
}

func FuzzContentKeys(f *testing.F) { fuzzDecoder(f, func() codec { return &ContentKeys{} }) }

// FuzzPeek checks the header probe never panics and agrees with the full
// decoders: a datagram a decoder accepts, Peek accepts with the same type.
func FuzzPeek(f *testing.F) {
	for _, s := range samples() {
		f.Add(encodeAll(s.value))
	}
	decoders := map[Type]func() codec{
		TypeAnnounce: func() codec { return &Shard{} }, TypeRelease: func() codec { return &Release{} },
		TypeHello: func() codec { return &Hello{} }, TypeCookie: func() codec { return &Cookie{} },
		TypeSubscribe: func() codec { return &Subscribe{} }, TypeSubscribed: func() codec { return &Subscribed{} },
		TypeRefused: func() codec { return &Refused{} }, TypeLeave: func() codec { return &Leave{} },
		TypeKeepalive: func() codec { return &Keepalive{} }, TypeChallenge: func() codec { return &Challenge{} },
		TypeResponse: func() codec { return &Response{} },
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Peek(b)
		for typ, fresh := range decoders {
			if fresh().Decode(b) == nil && (err != nil || h.Type != typ) {
				t.Fatalf("%v decoder accepts what Peek says is %v (%v)", typ, h.Type, err)
			}
		}
	})
}

// FuzzToken: a subscription token is not a datagram; whatever its decoder
// accepts re-encodes to the same bytes.
func FuzzToken(f *testing.F) {
	tok := Token{KeyID: [8]byte(seq(8, 1)), NotAfter: 1_700_000_000_000_000_000, Viewer: [8]byte(seq(8, 2)), Sig: [64]byte(seq(64, 3))}
	f.Add(encodeAll(&tok))
	f.Add(seq(TokenLen-1, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Token
		if m.Decode(b) != nil {
			return
		}
		out := make([]byte, TokenLen)
		if n, err := m.Encode(out); err != nil || !bytes.Equal(out[:n], b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, out)
		}
		if !bytes.Equal(m.Signed(out), b[:TokenLen-SigLen]) {
			t.Fatal("signed part differs")
		}
	})
}
