package fec_test

import (
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

// BenchmarkRebuild is the receiver side: verify one root signature, then
// each shard's proof, then rebuild — from the k data shards (no RS work)
// and with m shards lost (parity needed).
func BenchmarkRebuild(b *testing.B) {
	for _, n := range []int{300, 16 << 10} {
		g := benchGeometry(b, n)
		ds := datagrams(b, body(n, 1), g, 1, 1)
		shards := make([]wire.Shard, len(ds))
		for i := range ds {
			if err := shards[i].Decode(ds[i]); err != nil {
				b.Fatal(err)
			}
		}
		for _, lost := range []int{0, g.M} {
			b.Run(fmt.Sprintf("%s/lost%d", name(n, g), lost), func(b *testing.B) {
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					a := fec.NewAssembler(ring())
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
