package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			b := encodeAll(s.value)
			if len(b) != s.value.Len() {
				t.Fatalf("encoded %d bytes, Len says %d", len(b), s.value.Len())
			}
			got := s.fresh()
			if err := got.Decode(b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, s.value) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, s.value)
			}
			if again := encodeAll(got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

func TestEncodeShortBuffer(t *testing.T) {
	for _, s := range samples() {
		b := make([]byte, s.value.Len()-1)
		if _, err := s.value.Encode(b); !errors.Is(err, ErrShortBuffer) {
			t.Errorf("%s: encode into short buffer: got %v, want ErrShortBuffer", s.name, err)
		}
	}
}

// TestDecodeTruncated cuts every message at every length: each prefix must
// be refused, never accepted and never a panic.
func TestDecodeTruncated(t *testing.T) {
	for _, s := range samples() {
		b := encodeAll(s.value)
		for n := range len(b) {
			if err := s.fresh().Decode(b[:n]); err == nil {
				t.Errorf("%s: %d-byte prefix of %d accepted", s.name, n, len(b))
			}
		}
	}
}

// datagrams are the samples that are whole datagrams (not bodies/payloads).
func datagrams(t *testing.T) []sample {
	t.Helper()
	var out []sample
	for _, s := range samples() {
		if _, ok := s.value.(*Body); ok {
			continue
		}
		if _, ok := s.value.(*ContentKeys); ok {
			continue
		}
		out = append(out, s)
	}
	return out
}

func TestDecodeHeaderErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 0xff; return b }, ErrMagic},
		{"version", func(b []byte) []byte { b[offVersion] = Version + 1; return b }, ErrVersion},
		{"unknown type", func(b []byte) []byte { b[offType] = 0x7f; return b }, ErrUnknownType},
		{"critical flag", func(b []byte) []byte { b[offFlags] |= 0x80; return b }, ErrFlags},
		{"reserved", func(b []byte) []byte { b[offReserved+1] = 1; return b }, ErrReserved},
		{"length field", func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[offLength:], binary.BigEndian.Uint16(b[offLength:])+1)
			return b
		}, ErrLength},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }, ErrLength},
		{"oversized", func(b []byte) []byte { return append(b, make([]byte, MaxDatagram)...) }, ErrOversized},
		{"header only", func(b []byte) []byte { return b[:HeaderLen-1] }, ErrTruncated},
	}
	for _, s := range datagrams(t) {
		for _, c := range cases {
			b := c.mutate(encodeAll(s.value))
			if err := s.fresh().Decode(b); !errors.Is(err, c.want) {
				t.Errorf("%s/%s: got %v, want %v", s.name, c.name, err, c.want)
			}
		}
	}
}

func TestDecodeWrongType(t *testing.T) {
	ds := datagrams(t)
	for _, a := range ds {
		for _, b := range ds {
			if fmt.Sprintf("%T", a.value) == fmt.Sprintf("%T", b.value) {
				continue // two samples of one message type
			}
			if err := b.fresh().Decode(encodeAll(a.value)); !errors.Is(err, ErrWrongType) {
				t.Errorf("%s decoded as %s: got %v, want ErrWrongType", a.name, b.name, err)
			}
		}
	}
}

// An unknown advisory flag is ignored (and kept), an unknown critical one
// refused.
// Senders set only defined flags.
func TestAdvisoryFlagIgnored(t *testing.T) {
	r := &Release{Header: Header{Stream: 1, Period: 1}}
	b := encodeAll(r)
	b[offFlags+1] = 0x40 // an advisory bit version 1 does not define
	var got Release
	if err := got.Decode(b); err != nil || got.Flags != 0x0040 {
		t.Fatalf("advisory flag: err %v flags %#x", err, got.Flags)
	}
	for _, f := range []uint16{0x0040, 0x4000} {
		r.Flags = f
		if _, err := r.Encode(make([]byte, ReleaseLen)); !errors.Is(err, ErrFlags) {
			t.Fatalf("encode with undefined flag %#x: got %v", f, err)
		}
	}
}

func TestPeek(t *testing.T) {
	for _, s := range datagrams(t) {
		h, err := Peek(encodeAll(s.value))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if hdr := s.value.(interface{ header() *Header }).header(); h != *hdr {
			t.Errorf("%s: peeked %+v, encoded %+v", s.name, h, *hdr)
		}
	}
}

func TestSessionMessagesRefuseStreamFields(t *testing.T) {
	for _, s := range datagrams(t) {
		b := encodeAll(s.value)
		h, _ := Peek(b)
		if h.Type == TypeAnnounce || h.Type == TypeRelease {
			continue
		}
		b[offStream+3] = 1
		if err := s.fresh().Decode(b); !errors.Is(err, ErrInconsistent) {
			t.Errorf("%s with a stream id: got %v, want ErrInconsistent", s.name, err)
		}
	}
}

// header gives tests every message's header through one interface.
func (h *Header) header() *Header { return h }
