package wire

import "testing"

// BenchmarkEncode and BenchmarkDecode cover every message and body type;
// allocs/op must be 0 (TestZeroAllocs enforces it).
func BenchmarkEncode(b *testing.B) {
	for _, s := range samples() {
		out := make([]byte, s.value.Len())
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(out)))
			for b.Loop() {
				if _, err := s.value.Encode(out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, s := range samples() {
		in := encodeAll(s.value)
		dst := s.fresh()
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := dst.Decode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
