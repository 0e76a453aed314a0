package fec_test

import (
	"bytes"
	"testing"

	"github.com/embargo-live/embargo/fec"
)

// The Reed–Solomon code exactly as PROTOCOL.md §7.1 states it, written from
// the text alone: GF(2⁸) with the reducing polynomial 0x11d, the (k+m) × k
// Vandermonde matrix V[r][c] = r^c over the field (r the field element
// whose bits are the integer r, 0⁰ = 1), E = V · (V[0:k])⁻¹, parity row
// r = Σⱼ E[r][j]·data j. TestMatrixAsSpecified holds fec.Encode to it.

func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		carry := a & 0x80
		a <<= 1
		if carry != 0 {
			a ^= 0x1d // x⁸ = x⁴ + x³ + x² + 1
		}
		b >>= 1
	}
	return p
}

func gfPow(a byte, n int) byte {
	p := byte(1)
	for range n {
		p = gfMul(p, a)
	}
	return p
}

func gfInv(a byte) byte { return gfPow(a, 254) } // a²⁵⁵ = 1 for a ≠ 0

// gfInvert inverts a square matrix by Gauss–Jordan elimination.
func gfInvert(t *testing.T, m [][]byte) [][]byte {
	n := len(m)
	a := make([][]byte, n)
	for i := range a {
		a[i] = make([]byte, 2*n)
		copy(a[i], m[i])
		a[i][n+i] = 1
	}
	for c := range n {
		p := c
		for p < n && a[p][c] == 0 {
			p++
		}
		if p == n {
			t.Fatal("singular matrix")
		}
		a[c], a[p] = a[p], a[c]
		inv := gfInv(a[c][c])
		for j := range a[c] {
			a[c][j] = gfMul(a[c][j], inv)
		}
		for r := range n {
			if r != c && a[r][c] != 0 {
				f := a[r][c]
				for j := range a[r] {
					a[r][j] ^= gfMul(f, a[c][j])
				}
			}
		}
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = a[i][n:]
	}
	return out
}

// specEncode computes the k+m shards of data (k·size bytes) by §7.1.
func specEncode(t *testing.T, data []byte, k, m, size int) [][]byte {
	v := make([][]byte, k+m)
	for r := range v {
		v[r] = make([]byte, k)
		for c := range v[r] {
			v[r][c] = gfPow(byte(r), c)
		}
	}
	inv := gfInvert(t, v[:k])
	shards := make([][]byte, k+m)
	for r := range shards {
		shards[r] = make([]byte, size)
		for j := range k {
			var e byte // E[r][j] = Σᵢ V[r][i]·inv[i][j]
			for i := range k {
				e ^= gfMul(v[r][i], inv[i][j])
			}
			for b := range size {
				shards[r][b] ^= gfMul(e, data[j*size+b])
			}
		}
	}
	return shards
}

func TestMatrixAsSpecified(t *testing.T) {
	for _, g := range [][2]int{{1, 2}, {2, 2}, {3, 2}, {4, 2}, {5, 3}, {19, 10}, {79, 40}, {128, 128}} {
		k, m := g[0], g[1]
		const size = 7
		b := body(k*size, byte(k))
		set, err := fec.Encode(b, fec.Geometry{K: k, M: m, ShardSize: size, BodyLen: len(b)})
		if err != nil {
			t.Fatal(err)
		}
		want := specEncode(t, b, k, m, size)
		for i := range want {
			if !bytes.Equal(set.Shards[i], want[i]) {
				t.Fatalf("k=%d m=%d shard %d: fec %x, §7.1 %x", k, m, i, set.Shards[i], want[i])
			}
		}
	}
}
