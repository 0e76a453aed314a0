package fec_test

import (
	"bytes"
	"testing"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/wire"
)

// FuzzAssembler feeds mutated shards to an assembler that has already seen
// part of a genuine set, checking roots in Add or deferring them to its
// caller (WithAsyncChecks). Whatever the input, nothing panics, and any body
// the assembler returns is the genuine one: a forger cannot get a body
// accepted.
func FuzzAssembler(f *testing.F) {
	genuine := body(700, 11)
	g := fec.Geometry{K: 3, M: 2, ShardSize: 234, BodyLen: len(genuine)}
	ds := datagrams(f, genuine, g, 4, 8)
	for _, d := range ds {
		f.Add(d, false)
		f.Add(d, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, async bool) {
		var opts []fec.Option
		if async {
			opts = append(opts, fec.WithAsyncChecks())
		}
		a := fec.NewAssembler(ring(), opts...)
		add := func(s *wire.Shard) ([]byte, error) {
			out, err := a.Add(s)
			for c, ok := a.NextCheck(); ok; c, ok = a.NextCheck() {
				body, _, cerr := a.Checked(c, c.Verify(ring()))
				if body != nil {
					out = body
				}
				err = cerr
			}
			return out, err
		}
		var s wire.Shard
		for _, d := range ds[:2] {
			if err := s.Decode(d); err != nil {
				t.Fatal(err)
			}
			if _, err := add(&s); err != nil {
				t.Fatal(err)
			}
		}
		if s.Decode(b) != nil {
			return
		}
		out, _ := add(&s)
		if out != nil && !bytes.Equal(out, genuine) {
			t.Fatalf("forged body accepted: %x", out)
		}
	})
}
