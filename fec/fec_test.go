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
// shard with altered data fails its proof (or, at an index already held,
// is refused as a duplicate before any hashing), one with the attacker's
// own root fails the signature, and the genuine shards still rebuild the
// genuine body.
func TestForgedShardsCannotPoisonOrBlock(t *testing.T) {
	b := body(3000, 7)
	g, _ := fec.ChooseGeometry(len(b), wire.DefaultMaxDatagram, 50, 2)
	ds := datagrams(t, b, g, 3, 5)
	attacker := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{66}, ed25519.SeedSize))
	evil := body(3000, 99)
	evilSet, _ := fec.Encode(evil, g)

	a := fec.NewAssembler(ring())
	forgeries := 0
	held := map[int]bool{}
	addForgeries := func(i int) {
		// genuine header, root and signature; altered data
		s := decode(t, bytes.Clone(ds[i]))
		s.Data[0] ^= 0xff
		want := fec.ErrBadProof
		if held[i] {
			want = fec.ErrDuplicate
		}
		if _, err := a.Add(s); !errors.Is(err, want) {
			t.Fatalf("altered data at index %d (held %v): got %v, want %v", i, held[i], err, want)
		}
		// a consistent shard set of the attacker's, signed by the attacker
		var f wire.Shard
		f.Stream, f.Period = 3, 5
		evilSet.Fill(&f, i)
		_ = seal.SignShardRoot(attacker, &f)
		f.KeyID = seal.KeyID(origin.Public().(ed25519.PublicKey)) // claim the origin's key
		// First checked and refused, then remembered; once the genuine
		// root is verified, not checked at all.
		want = fec.ErrForged
		if len(held) > 0 {
			want = fec.ErrOtherRoot
		}
		if _, err := a.Add(&f); !errors.Is(err, want) {
			t.Fatalf("attacker root: got %v, want %v", err, want)
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
		held[g.Shards()-1-i] = true
		got = out
	}
	if !bytes.Equal(got, b) {
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
	if _, err := a.Add(s); !errors.Is(err, fec.ErrOtherRoot) {
		t.Fatalf("relabelled body length: got %v", err)
	}
	// A second genuine set for the same period (another geometry) is not
	// checked: the first one is kept.
	other := datagrams(t, b, fec.Geometry{K: 1, M: 2, ShardSize: 100, BodyLen: 100}, 1, 1)
	if _, err := a.Add(decode(t, other[0])); !errors.Is(err, fec.ErrOtherRoot) {
		t.Fatalf("second genuine set: got %v", err)
	}
	// Before any root is verified, a relabelled shard is checked and fails.
	fresh := fec.NewAssembler(ring())
	if _, err := fresh.Add(s); !errors.Is(err, fec.ErrForged) {
		t.Fatalf("relabelled body length, first seen: got %v", err)
	}
	if st := fresh.Stats(); st.Verified != 1 || st.Failed != 1 {
		t.Fatalf("checks %+v", st)
	}
}

// The window drops periods that fall far behind their stream, and refuses
// their shards; rebuilt periods are remembered up to the bound.
func TestWindowAndRemember(t *testing.T) {
	g := fec.Geometry{K: 2, M: 2, ShardSize: 40, BodyLen: 80}
	a := fec.NewAssembler(ring(), fec.WithWindow(4), fec.WithRemember(2))
	for p := uint64(10); p < 16; p++ {
		if _, err := a.Add(decode(t, datagrams(t, body(80, byte(p)), g, 1, p)[0])); err != nil {
			t.Fatalf("period %d: %v", p, err)
		}
	}
	// newest is 15: periods 10 (15−4−1) fell out of the window when 15 arrived.
	if st := a.Stats(); st.InFlight != 5 || st.Evicted != 1 || st.HeldBytes != 5*4*40 {
		t.Fatalf("after periods 10..15 with window 4: %+v", st)
	}
	if _, err := a.Add(decode(t, datagrams(t, body(80, 10), g, 1, 10)[1])); !errors.Is(err, fec.ErrStale) {
		t.Fatalf("period below the window: %v", err)
	}
	// another stream has its own window
	if _, err := a.Add(decode(t, datagrams(t, body(80, 1), g, 2, 3)[0])); err != nil {
		t.Fatalf("other stream: %v", err)
	}
	for p := uint64(20); p < 23; p++ {
		ds := datagrams(t, body(80, byte(p)), g, 3, p)
		_, _ = a.Add(decode(t, ds[0]))
		if out, err := a.Add(decode(t, ds[1])); err != nil || out == nil {
			t.Fatalf("period %d not rebuilt: %v", p, err)
		}
	}
	if a.Done(3, 20) || !a.Done(3, 21) || !a.Done(3, 22) {
		t.Fatalf("remember bound 2: done(20)=%v done(21)=%v done(22)=%v", a.Done(3, 20), a.Done(3, 21), a.Done(3, 22))
	}
}

// Past the budgets new periods are refused, and the periods already in
// flight still complete.
func TestBudgetsRefuseRatherThanEvict(t *testing.T) {
	g := fec.Geometry{K: 2, M: 2, ShardSize: 40, BodyLen: 80}
	a := fec.NewAssembler(ring(), fec.WithMaxPeriods(3), fec.WithMaxPeriodBytes(4*40))
	sets := make([][][]byte, 4)
	for p := range sets {
		sets[p] = datagrams(t, body(80, byte(p)), g, 1, uint64(p))
		_, err := a.Add(decode(t, sets[p][0]))
		if want := error(nil); p == 3 {
			if !errors.Is(err, fec.ErrBusy) {
				t.Fatalf("fourth period: %v, want ErrBusy", err)
			}
		} else if err != want {
			t.Fatalf("period %d: %v", p, err)
		}
	}
	for p := range 3 {
		if out, err := a.Add(decode(t, sets[p][3])); err != nil || !bytes.Equal(out, body(80, byte(p))) {
			t.Fatalf("period %d in flight did not complete: %v", p, err)
		}
	}
	big := fec.Geometry{K: 3, M: 2, ShardSize: 40, BodyLen: 120}
	if _, err := a.Add(decode(t, datagrams(t, body(120, 1), big, 1, 3)[0])); !errors.Is(err, fec.ErrTooLarge) {
		t.Fatalf("period over the per-period bound: %v", err)
	}
	held := fec.NewAssembler(ring(), fec.WithMaxHeldBytes(4*40))
	_, _ = held.Add(decode(t, sets[0][0]))
	if _, err := held.Add(decode(t, sets[1][0])); !errors.Is(err, fec.ErrBusy) {
		t.Fatalf("past the held-bytes budget: %v", err)
	}
}

// A receiver of MaxStreams streams whose carousels interleave rebuilds
// every one (no eviction among honest periods).
func TestManyStreamsInterleaved(t *testing.T) {
	g := fec.Geometry{K: 5, M: 3, ShardSize: 20, BodyLen: 100}
	streams := wire.MaxStreams
	sets := make([][][]byte, streams)
	for s := range sets {
		sets[s] = datagrams(t, body(100, byte(s)), g, uint32(s+1), 7)
	}
	a := fec.NewAssembler(ring())
	rebuilt := 0
	for i := range g.Shards() {
		for s := range sets {
			out, err := a.Add(decode(t, sets[s][i]))
			if err != nil && !errors.Is(err, fec.ErrComplete) {
				t.Fatalf("stream %d shard %d: %v", s, i, err)
			}
			if out != nil {
				rebuilt++
			}
		}
	}
	if rebuilt != streams {
		t.Fatalf("rebuilt %d of %d interleaved streams", rebuilt, streams)
	}
}

// An attacker replays genuine shards of many other periods (other streams,
// and older periods of the victim's stream within its window) between the
// victim's shards: the victim's period still completes.
func TestReplayCannotEvictLivePeriod(t *testing.T) {
	victim := body(16<<10, 3)
	g, _ := fec.ChooseGeometry(len(victim), wire.DefaultMaxDatagram, 50, 2)
	ds := datagrams(t, victim, g, 1, 100)
	small := fec.Geometry{K: 2, M: 2, ShardSize: 40, BodyLen: 80}
	var replays [][]byte
	for s := range 40 {
		replays = append(replays, datagrams(t, body(80, byte(s)), small, uint32(100+s), 1)[0])
	}
	for p := range 20 {
		replays = append(replays, datagrams(t, body(80, byte(p)), small, 1, uint64(80+p))[0])
	}
	a := fec.NewAssembler(ring())
	var out []byte
	for i := range g.K {
		for _, r := range replays {
			_, _ = a.Add(decode(t, r))
		}
		var err error
		if out, err = a.Add(decode(t, ds[i])); err != nil {
			t.Fatalf("victim shard %d: %v", i, err)
		}
	}
	if !bytes.Equal(out, victim) {
		t.Fatal("victim period not rebuilt under replay")
	}
}

// Catch-up of the deepest allowed depth plus the largest announce lead fits
// the default window.
func TestCatchUpFitsDefaultWindow(t *testing.T) {
	g := fec.Geometry{K: 1, M: 2, ShardSize: 80, BodyLen: 80}
	a := fec.NewAssembler(ring())
	const current = 1000
	// The receiver first hears the furthest-ahead announce, then catch-up.
	first := uint64(current + wire.MaxAnnounceLead)
	if _, err := a.Add(decode(t, datagrams(t, body(80, 1), g, 1, first)[0])); err != nil {
		t.Fatal(err)
	}
	for p := uint64(current - wire.MaxCatchUp); p <= current; p++ {
		if out, err := a.Add(decode(t, datagrams(t, body(80, byte(p)), g, 1, p)[0])); err != nil || out == nil {
			t.Fatalf("catch-up period %d: %v", p, err)
		}
	}
}

// A hand-built shard that never went through Decode is validated, not
// trusted: an index past k+m is refused, not a panic.
func TestHandBuiltShardValidated(t *testing.T) {
	ds := datagrams(t, body(80, 1), fec.Geometry{K: 2, M: 2, ShardSize: 40, BodyLen: 80}, 1, 1)
	s := decode(t, ds[1])
	s.Index = 5
	if _, err := fec.NewAssembler(ring()).Add(s); !errors.Is(err, wire.ErrInconsistent) {
		t.Fatalf("index past k+m: %v", err)
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

// Carousels and several edges make most arriving shards duplicates: that
// path (validate, proof check, duplicate) must not allocate.
func TestDuplicateShardAllocatesNothing(t *testing.T) {
	ds := datagrams(t, body(3000, 1), fec.Geometry{K: 4, M: 2, ShardSize: 750, BodyLen: 3000}, 1, 1)
	a := fec.NewAssembler(ring())
	s := decode(t, ds[2])
	if _, err := a.Add(s); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Add(s); !errors.Is(err, fec.ErrDuplicate) {
			t.Fatalf("re-offered shard: %v", err)
		}
	})
	if allocs != 0 {
		t.Fatalf("duplicate shard allocates %.1f times", allocs)
	}
}
