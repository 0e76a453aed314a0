package fec_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var origin = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))

func ring() *seal.KeyRing { return seal.NewKeyRing(origin.Public().(ed25519.PublicKey)) }

func body(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// datagrams encodes body with g as the origin would for (stream, period)
// and returns the k+m ANNOUNCE datagrams.
func datagrams(t testing.TB, b []byte, g fec.Geometry, stream uint32, period uint64) [][]byte {
	t.Helper()
	set, err := fec.Encode(b, g)
	if err != nil {
		t.Fatal(err)
	}
	var s wire.Shard
	s.Stream, s.Period = stream, period
	set.Fill(&s, 0)
	if err := seal.SignShardRoot(origin, &s); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, g.Shards())
	for i := range out {
		set.Fill(&s, i)
		out[i] = make([]byte, s.Len())
		if _, err := s.Encode(out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func decode(t testing.TB, d []byte) *wire.Shard {
	t.Helper()
	var s wire.Shard
	if err := s.Decode(d); err != nil {
		t.Fatalf("decode shard: %v", err)
	}
	return &s
}

func TestChooseGeometry(t *testing.T) {
	for _, n := range []int{1, 300, 1200, 16 << 10, wire.MaxBody} {
		g, err := fec.ChooseGeometry(n, wire.DefaultMaxDatagram, fec.DefaultParityPercent, fec.DefaultMinParity)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if g.DatagramLen() > wire.DefaultMaxDatagram || g.Check() != nil || g.M < fec.DefaultMinParity || g.M*100 < g.K*fec.DefaultParityPercent {
			t.Errorf("%d bytes: geometry %+v (datagram %d)", n, g, g.DatagramLen())
		}
	}
	if _, err := fec.ChooseGeometry(wire.MaxBody+1, 1200, 50, 2); !errors.Is(err, fec.ErrGeometry) {
		t.Errorf("oversized body: %v", err)
	}
	if _, err := fec.ChooseGeometry(1000, 200, 50, 2); !errors.Is(err, fec.ErrGeometry) {
		t.Errorf("datagram too small for any shard: %v", err)
	}
}

// Every k-subset of a small set, in every rotation, rebuilds the body.
func TestRebuildFromAnyK(t *testing.T) {
	b := body(100, 3)
	g := fec.Geometry{K: 3, M: 3, ShardSize: 34, BodyLen: len(b)}
	ds := datagrams(t, b, g, 1, 1)
	n := g.Shards()
	subsets := 0
	for mask := range 1 << n {
		if popcount(mask) != g.K {
			continue
		}
		subsets++
		a := fec.NewAssembler(ring())
		var got []byte
		for i := range n {
			if mask&(1<<i) == 0 {
				continue
			}
			out, err := a.Add(decode(t, ds[i]))
			if err != nil {
				t.Fatalf("mask %b shard %d: %v", mask, i, err)
			}
			got = out
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("mask %b: rebuilt %x", mask, got)
		}
	}
	if subsets != 20 {
		t.Fatalf("tried %d subsets, want C(6,3)=20", subsets)
	}
}

func popcount(x int) (n int) {
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// Shards from three edges, shuffled and duplicated, with m lost: the body
// comes back exactly once; later shards are ErrComplete.
func TestShuffledDuplicatedFromSeveralEdges(t *testing.T) {
	b := body(16<<10, 5)
	g, err := fec.ChooseGeometry(len(b), wire.DefaultMaxDatagram, 50, 2)
	if err != nil {
		t.Fatal(err)
	}
	ds := datagrams(t, b, g, 2, 9)
	rng := rand.New(rand.NewPCG(1, 2))
	lost := map[int]bool{}
	for _, i := range rng.Perm(g.Shards())[:g.M] {
		lost[i] = true
	}
	var stream [][]byte
	for range 3 { // three edges send the same set
		for i, d := range ds {
			if !lost[i] {
				stream = append(stream, d)
			}
		}
	}
	rng.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
	a := fec.NewAssembler(ring())
	rebuilt, dups, complete := 0, 0, 0
	for _, d := range stream {
		out, err := a.Add(decode(t, d))
		switch {
		case errors.Is(err, fec.ErrDuplicate):
			dups++
		case errors.Is(err, fec.ErrComplete):
			complete++
		case err != nil:
			t.Fatal(err)
		case out != nil:
			rebuilt++
			if !bytes.Equal(out, b) {
				t.Fatal("rebuilt body differs")
			}
		}
	}
	if rebuilt != 1 || complete == 0 || dups == 0 {
		t.Fatalf("rebuilt %d times, %d duplicates, %d after completion", rebuilt, dups, complete)
	}
	if st := a.Stats(); st.InFlight != 0 || st.HeldBytes != 0 || st.Verified != 1 {
		t.Fatalf("after completion: %+v (want nothing held, one signature check)", st)
	}
}

// An attacker floods forged shards before and between genuine ones: a
// shard with altered data fails its proof, one with the attacker's own root
// fails the signature, and the genuine shards still rebuild the genuine
// body.
func TestForgedShardsCannotPoisonOrBlock(t *testing.T) {
	b := body(3000, 7)
	g, _ := fec.ChooseGeometry(len(b), wire.DefaultMaxDatagram, 50, 2)
	ds := datagrams(t, b, g, 3, 5)
	attacker := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{66}, ed25519.SeedSize))
	evil := body(3000, 99)
	evilSet, _ := fec.Encode(evil, g)

	a := fec.NewAssembler(ring())
	forgeries := 0
	addForgeries := func(i int) {
		// genuine header, root and signature; altered data
		s := decode(t, bytes.Clone(ds[i]))
		s.Data[0] ^= 0xff
		if _, err := a.Add(s); !errors.Is(err, fec.ErrBadProof) {
			t.Fatalf("altered data: got %v", err)
		}
		// a consistent shard set of the attacker's, signed by the attacker
		var f wire.Shard
		f.Stream, f.Period = 3, 5
		evilSet.Fill(&f, i)
		_ = seal.SignShardRoot(attacker, &f)
		f.KeyID = seal.KeyID(origin.Public().(ed25519.PublicKey)) // claim the origin's key
		if _, err := a.Add(&f); !errors.Is(err, fec.ErrForged) {
			t.Fatalf("attacker root: got %v", err)
		}
		forgeries += 2
	}
	var got []byte
	for i := range g.K {
		addForgeries(i)
		out, err := a.Add(decode(t, ds[g.Shards()-1-i])) // parity first
		if err != nil {
			t.Fatalf("genuine shard after forgeries: %v", err)
		}
		got = out
	}
	if !bytes.Equal(got, b) || forgeries != 2*g.K {
		t.Fatalf("genuine body not rebuilt after %d forgeries", forgeries)
	}
}

// A shard whose geometry disagrees with its signed root is refused.
func TestInconsistentGeometryRefused(t *testing.T) {
	b := body(100, 1)
	ds := datagrams(t, b, fec.Geometry{K: 2, M: 2, ShardSize: 50, BodyLen: 100}, 1, 1)
	a := fec.NewAssembler(ring())
	if _, err := a.Add(decode(t, ds[0])); err != nil {
		t.Fatal(err)
	}
	s := decode(t, bytes.Clone(ds[1]))
	s.BodyLen = 99 // still a valid geometry on its own
	if _, err := a.Add(s); !errors.Is(err, fec.ErrForged) {
		t.Fatalf("relabelled body length: got %v", err)
	}
	// A second genuine set for the same period (another geometry) is a conflict.
	other := datagrams(t, b, fec.Geometry{K: 1, M: 2, ShardSize: 100, BodyLen: 100}, 1, 1)
	if _, err := a.Add(decode(t, other[0])); !errors.Is(err, fec.ErrConflict) {
		t.Fatalf("second genuine set: got %v", err)
	}
}

func TestMemoryBounds(t *testing.T) {
	g := fec.Geometry{K: 2, M: 2, ShardSize: 40, BodyLen: 80}
	a := fec.NewAssembler(ring(), fec.WithMaxPeriods(3), fec.WithMaxPeriodBytes(4*40), fec.WithWindow(4), fec.WithRemember(2))
	for p := uint64(10); p < 16; p++ {
		if _, err := a.Add(decode(t, datagrams(t, body(80, byte(p)), g, 1, p)[0])); err != nil {
			t.Fatalf("period %d: %v", p, err)
		}
	}
	st := a.Stats()
	if st.InFlight != 3 || st.Evicted != 3 || st.HeldBytes != 3*4*40 {
		t.Fatalf("after 6 periods with room for 3: %+v", st)
	}
	// Too far below the newest period (15): stale, and not stored.
	if _, err := a.Add(decode(t, datagrams(t, body(80, 1), g, 1, 10)[1])); !errors.Is(err, fec.ErrStale) {
		t.Fatalf("stale period: %v", err)
	}
	big := fec.Geometry{K: 3, M: 2, ShardSize: 40, BodyLen: 120}
	if _, err := a.Add(decode(t, datagrams(t, body(120, 1), big, 1, 15)[0])); !errors.Is(err, fec.ErrTooLarge) {
		t.Fatalf("period over byte bound: %v", err)
	}
	// Completed periods are remembered up to the bound.
	for p := uint64(20); p < 23; p++ {
		ds := datagrams(t, body(80, byte(p)), g, 2, p)
		_, _ = a.Add(decode(t, ds[0]))
		if out, err := a.Add(decode(t, ds[1])); err != nil || out == nil {
			t.Fatalf("period %d not rebuilt: %v", p, err)
		}
	}
	if a.Done(2, 20) || !a.Done(2, 21) || !a.Done(2, 22) {
		t.Fatalf("remember bound 2: done(20)=%v done(21)=%v done(22)=%v", a.Done(2, 20), a.Done(2, 21), a.Done(2, 22))
	}
}

func TestEncodeRefusesMismatch(t *testing.T) {
	if _, err := fec.Encode(body(10, 1), fec.Geometry{K: 1, M: 1, ShardSize: 10, BodyLen: 11}); !errors.Is(err, fec.ErrGeometry) {
		t.Fatalf("length mismatch: %v", err)
	}
	if _, err := fec.Encode(body(10, 1), fec.Geometry{K: 2, M: 1, ShardSize: 10, BodyLen: 10}); !errors.Is(err, fec.ErrGeometry) {
		t.Fatalf("empty data shard: %v", err)
	}
}
