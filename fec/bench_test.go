package fec_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/wire"
)

// Benchmarks are named by body size and geometry, as reedsolomon's are;
// SetBytes makes ns/op comparable as MB/s.

func benchGeometry(b *testing.B, n int) fec.Geometry {
	g, err := fec.ChooseGeometry(n, wire.DefaultMaxDatagram, fec.DefaultParityPercent, fec.DefaultMinParity)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

func name(n int, g fec.Geometry) string {
	return fmt.Sprintf("%dB/k%d+m%d/%dB", n, g.K, g.M, g.ShardSize)
}

// BenchmarkShard is the origin/edge side: RS-encode and build the Merkle
// tree with every proof.
func BenchmarkShard(b *testing.B) {
	for _, n := range []int{300, 16 << 10} {
		g := benchGeometry(b, n)
		data := body(n, 1)
		b.Run(name(n, g), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fec.Encode(data, g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRebuild is the receiver side in steady state — one Assembler
// across periods, as a receiver keeps it, so the Reed–Solomon coder is
// made once: verify one root signature, then each shard's proof, then
// rebuild, from the k data shards (no RS work) and with m shards lost
// (parity needed). Making each period's datagrams is outside the timing.
func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{300, 16 << 10} {
		g := benchGeometry(b, n)
		payload := body(n, 1)
		for _, lost := range []int{0, g.M} {
			b.Run(fmt.Sprintf("%s/lost%d", name(n, g), lost), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				a := fec.NewAssembler(ring())
				shards := make([]wire.Shard, g.Shards())
				period := uint64(0)
				for b.Loop() {
					b.StopTimer()
					period++
					for i, d := range datagrams(b, payload, g, 1, period) {
						if err := shards[i].Decode(d); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					var out []byte
					for i := lost; i < len(shards) && out == nil; i++ {
						var err error
						if out, err = a.Add(&shards[i]); err != nil {
							b.Fatal(err)
						}
					}
					if len(out) != n {
						b.Fatal("not rebuilt")
					}
				}
			})
		}
	}
}

// BenchmarkDuplicate is the most common arrival: a shard the assembler
// already holds (a later carousel round, another edge's copy).
func BenchmarkDuplicate(b *testing.B) {
	g := benchGeometry(b, 16<<10)
	ds := datagrams(b, body(16<<10, 1), g, 1, 1)
	var s wire.Shard
	if err := s.Decode(ds[0]); err != nil {
		b.Fatal(err)
	}
	a := fec.NewAssembler(ring())
	if _, err := a.Add(&s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Add(&s); !errors.Is(err, fec.ErrDuplicate) {
			b.Fatal(err)
		}
	}
}
