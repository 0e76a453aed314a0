package bench

import (
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

func release(t *testing.T, period uint64) []byte {
	t.Helper()
	r := wire.Release{Header: wire.Header{Stream: 1, Period: period}, ReleaseAt: 1}
	b := make([]byte, r.Len())
	if _, err := r.Encode(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEdgeSkew: the stamping sender keeps each period's first RELEASE
// send per edge and passes every batch on; the sum-up pairs each period's
// spread across the edges with the sum of the bounds the edges reported
// for it, and leaves out a period one edge never sent.
func TestEdgeSkew(t *testing.T) {
	f := newFirstSends(2)
	var passed int
	inner := edge.SenderFunc(func(_ wire.Type, dgs [][]byte) (int, error) { passed += len(dgs); return len(dgs), nil })
	a, b := f.wrap(0, inner), f.wrap(1, inner)
	for _, s := range []edge.Sender{a, b} {
		s.Send(wire.TypeRelease, [][]byte{release(t, 1), release(t, 2)})
		s.Send(wire.TypeAnnounce, [][]byte{release(t, 3)}) // not a release: not stamped
	}
	a.Send(wire.TypeRelease, [][]byte{release(t, 4)})
	if passed != 7 {
		t.Fatalf("%d datagrams passed on, want 7", passed)
	}
	if len(f.first[0]) != 3 || len(f.first[1]) != 2 {
		t.Fatalf("stamped %v and %v", f.first[0], f.first[1])
	}
	// Set the instants: period 1 200 µs apart, period 2 900 µs apart.
	f.first[0][1], f.first[1][1] = 1000, 1000+200_000
	f.first[0][2], f.first[1][2] = 5000+900_000, 5000
	rep := func(e uint32, p uint64, bound time.Duration, held int) edge.Report {
		return edge.Report{Edge: e, Period: p, Held: held, Lateness: time.Duration(e) * time.Microsecond,
			Clock: ptp.Reading{Earliest: 0, Latest: 2 * int64(bound), DataAge: time.Duration(p) * time.Second}}
	}
	es := edgeSkew([]string{"chrony x", "ptp4l y"}, f, []edge.Report{
		rep(1, 1, 150*time.Microsecond, 0), rep(2, 1, 100*time.Microsecond, 0),
		rep(1, 2, 300*time.Microsecond, 1), rep(2, 2, 400*time.Microsecond, 0),
		rep(1, 4, time.Millisecond, 0),
	})
	if es.Periods != 2 || es.Within != 1 || es.SkewMax != 900*time.Microsecond || es.SumMin != 250*time.Microsecond || es.SumP50 != 250*time.Microsecond {
		t.Errorf("%+v", es)
	}
	if e := es.Edges[0]; e.Clock != "chrony x" || e.BoundMax != time.Millisecond || e.Held != 1 || e.AgeMax != 4*time.Second || e.LateMax != time.Microsecond {
		t.Errorf("edge 0: %+v", e)
	}
	if e := es.Edges[1]; e.BoundP50 != 100*time.Microsecond || e.BoundMax != 400*time.Microsecond || e.Held != 0 {
		t.Errorf("edge 1: %+v", e)
	}
}
