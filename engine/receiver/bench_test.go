package receiver_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/ptp"
)

// TestOneSignaturePerPeriod: a receiver checks one signature per period —
// the shard root's, which covers the body's bytes — and delivers the same
// keys as one that also checks the body's own (CheckBodySignature).
func TestOneSignaturePerPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		var got [2][]receiver.Event
		var rs [2]*receiver.Receiver
		for i, both := range []bool{false, true} {
			r, err := receiver.New(receiver.Config{Trusted: f.ring, Master: f.master, Streams: []uint32{1}, CheckBodySignature: both,
				OnEvent: func(ev receiver.Event) { got[i] = append(got[i], ev) }})
			if err != nil {
				t.Fatal(err)
			}
			rs[i] = r
		}
		for p := uint64(1); p <= 3; p++ {
			b, keys := f.keys(t, 1, p)
			for _, r := range rs {
				for _, d := range append(slices.Clone(b.Shards), release(t, b, 1)) {
					r.Handle(d, time.Time{}, edgeAddr)
				}
			}
			for i := range rs {
				if len(got[i]) != int(p) || !slices.Equal(got[i][p-1].Keys, keys) {
					t.Fatalf("receiver %d, period %d: %+v", i, p, got[i])
				}
			}
		}
		if a, b := rs[0].Stats().SignatureChecks(), rs[1].Stats().SignatureChecks(); a != 3 || b != 6 {
			t.Fatalf("signature checks for 3 periods: %d (root only), %d (root and body); want 3 and 6", a, b)
		}
	})
}

// BenchmarkPeriod is a receiver's CPU per period: one period's ANNOUNCE
// shards and its RELEASE through Handle (checks inline, one goroutine), to
// the delivered content keys. "root+body" also checks the body's own
// signature, as receivers did before; "root" is the default.
func BenchmarkPeriod(b *testing.B) {
	for _, c := range []struct {
		name string
		both bool
	}{{"root", false}, {"root+body", true}} {
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b)
			periods := make([][][]byte, b.N)
			for i := range periods {
				p := uint64(i + 1)
				keys, err := f.origin.NewContentKeys(2)
				if err != nil {
					b.Fatal(err)
				}
				bd, err := f.origin.Keys(1, p, f.at(p), keys)
				if err != nil {
					b.Fatal(err)
				}
				periods[i] = append(slices.Clone(bd.Shards), release(b, bd, 1))
			}
			delivered := 0
			r, err := receiver.New(receiver.Config{Trusted: f.ring, Master: f.master, Streams: []uint32{1}, CheckBodySignature: c.both,
				TAIOffset: ptp.DefaultTAIOffset, OnEvent: func(receiver.Event) { delivered++ }})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, dgs := range periods {
				for _, d := range dgs {
					r.Handle(d, time.Time{}, edgeAddr)
				}
			}
			b.StopTimer()
			if delivered != b.N {
				b.Fatalf("delivered %d of %d periods: %v", delivered, b.N, r.Stats().Drops)
			}
			b.ReportMetric(float64(len(periods[0])), "datagrams/period")
		})
	}
}
