package fec_test

import (
	"bytes"
	"testing"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/wire"
)

// FuzzAssembler feeds mutated shards to an assembler that has already seen
// part of a genuine set. Whatever the input, nothing panics, and any body
// the assembler returns is the genuine one: a forger cannot get a body
// accepted.
func FuzzAssembler(f *testing.F) {
	genuine := body(700, 11)
	g := fec.Geometry{K: 3, M: 2, ShardSize: 234, BodyLen: len(genuine)}
	ds := datagrams(f, genuine, g, 4, 8)
	for _, d := range ds {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := fec.NewAssembler(ring())
		var s wire.Shard
		for _, d := range ds[:2] {
			if err := s.Decode(d); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Add(&s); err != nil {
				t.Fatal(err)
			}
		}
		if s.Decode(b) != nil {
			return
		}
		out, _ := a.Add(&s)
		if out != nil && !bytes.Equal(out, genuine) {
			t.Fatalf("forged body accepted: %x", out)
		}
	})
}
