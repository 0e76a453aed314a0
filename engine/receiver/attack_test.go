package receiver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/fec/fectest"
	"github.com/embargo-live/embargo/wire"
)

// forgedShard is d (a genuine ANNOUNCE datagram) with a root of the
// attacker's (from nonce), still claiming the origin's key id, under a
// garbage signature: only a signature check can refuse it.
func forgedShard(t testing.TB, d []byte, nonce uint64) []byte {
	t.Helper()
	out, err := fectest.ForgeDatagram(nil, d, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setup is a fixture, a sink and a receiver delivering to it.
func setup(t *testing.T) (*fixture, *sink, *receiver.Receiver) {
	f := newFixture(t)
	s := new(sink)
	return f, s, f.receiver(t, s, nil)
}

// One forged shard resent 10,000 times for a period not yet announced costs
// one signature check, counted; the genuine period still opens, at the
// cost of one root check (the root's signature covers the body).
func TestForgedShardResentCostsOneCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, s, r := setup(t)
		b, _ := f.keys(t, 1, 3)
		evil := forgedShard(t, b.Shards[0], 1)
		for range 10_000 {
			feed(r, evil)
		}
		st := r.Stats()
		if st.SignatureChecks() != 1 || st.Drops["forged"] != 1 || st.Drops["forged-repeat"] != 9_999 {
			t.Fatalf("10,000 resends: %d signature checks, drops %v", st.SignatureChecks(), st.Drops)
		}
		feed(r, b.Shards...)
		feed(r, release(t, b, 1))
		if st := r.Stats(); len(s.got()) != 1 || st.SignatureChecks() != 2 {
			t.Fatalf("genuine period: %d events, %d signature checks (want 1 and 2)", len(s.got()), st.SignatureChecks())
		}
	})
}

// multiShard is a bundle whose body needs k ≥ 2 data shards, so a receiver
// can hold its first data shard — and so its commitment — before the body.
func multiShard(t testing.TB, f *fixture, p uint64) *bundle.Bundle {
	t.Helper()
	keys, err := f.origin.NewContentKeys(40)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.origin.Keys(1, p, f.at(p), keys)
	if err != nil {
		t.Fatal(err)
	}
	var s wire.Shard
	if err := s.Decode(b.Shards[0]); err != nil || s.K < 2 {
		t.Fatalf("want k ≥ 2: %v, k=%d", err, s.K)
	}
	return b
}

// A flood of forged RELEASEs around the genuine one, before the body is
// whole, does not push the genuine one out of the early queue: once the
// first data shard is held, the commitment is known and forged secrets are
// refused at once rather than held.
func TestForgedReleaseFloodKeepsGenuine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, s, r := setup(t)
		b := multiShard(t, f, 3)
		feed(r, b.Shards[0])
		bogus := release(t, b, 9)
		flood := func(n int) {
			for i := range n {
				binary.BigEndian.PutUint32(bogus[wire.HeaderLen:], uint32(i)+1)
				feed(r, bogus)
			}
		}
		flood(1000)
		feed(r, release(t, b, 1))
		flood(1000)
		feed(r, b.Shards[1:]...)
		if got := s.got(); len(got) != 1 || got[0].EdgeID != 1 {
			t.Fatalf("genuine early RELEASE lost to the flood: events %+v; %+v", got, r.Stats())
		}
		if st := r.Stats(); st.Drops["wrong-rk"] != 2000 || st.Drops["busy"] != 0 {
			t.Fatalf("forged secrets: drops %v, want 2000 wrong-rk, none busy", st.Drops)
		}
	})
}

// Without any shard of the period yet, forged secrets are held (a few)
// and refused when the body comes, and the genuine one held among them
// still opens it.
func TestEarlyForgedReleasesRefusedWhenHeadArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, s, r := setup(t)
		b := multiShard(t, f, 3)
		feed(r, release(t, b, 1))
		bogus := release(t, b, 9)
		bogus[wire.HeaderLen] ^= 1
		feed(r, bogus)
		feed(r, b.Shards[0])
		if st := r.Stats(); st.Drops["wrong-rk"] != 1 || len(s.got()) != 0 {
			t.Fatalf("after the first data shard: %v, %d events", st.Drops, len(s.got()))
		}
		feed(r, b.Shards[1:]...)
		if got := s.got(); len(got) != 1 || got[0].EdgeID != 1 {
			t.Fatalf("events %+v", got)
		}
	})
}

// A RELEASE is handled while the shard path is busy (a signature check
// holds its lock): the two paths share no lock.
func TestReleaseNeverWaitsForShards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, s, r := setup(t)
		b, _ := f.keys(t, 1, 3)
		feed(r, b.Shards...)
		done := receiver.HoldShards(r)
		go feed(r, release(t, b, 1))
		synctest.Wait()
		delivered := len(s.got())
		done()
		if delivered != 1 {
			t.Fatalf("RELEASE waited for the shard path: %d events while it was busy", delivered)
		}
	})
}

// The datagram path makes no signature check: a forged shard leaves its
// check to the checker, and a RELEASE behind it is delivered before the
// check has run.
func TestDatagramPathChecksNoSignature(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, s, r := setup(t)
		b, _ := f.keys(t, 1, 3)
		feed(r, b.Shards...) // checked at once: no checker is running
		before := r.Stats().SignatureChecks()
		run := receiver.DeferChecks(r)
		next, _ := f.keys(t, 1, 5)
		feed(r, forgedShard(t, next.Shards[0], 1), release(t, b, 1))
		if got := len(s.got()); got != 1 || r.Stats().SignatureChecks() != before {
			t.Fatalf("%d events, %d signature checks on the datagram path", got, r.Stats().SignatureChecks()-before)
		}
		run()
		if st := r.Stats(); st.SignatureChecks() != before+1 || st.Drops["forged"] != 1 {
			t.Fatalf("after the checker: %d checks, drops %v", st.SignatureChecks()-before, st.Drops)
		}
	})
}

// forgedRelease is a RELEASE of b's period with a secret made from i.
func forgedRelease(t testing.TB, b *bundle.Bundle, i int) []byte {
	d := release(t, b, 66)
	binary.BigEndian.PutUint64(d[wire.HeaderLen:], uint64(i)+1)
	return d
}

// attacker is the i-th of many attacking addresses.
func attacker(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 9999)
}

// Forged RELEASEs that come before any shard of their period — before,
// around and after the genuine one, for that period and for every period
// the receiver would hold — never push the genuine one out, whether the
// flood comes from one address or from a thousand: a source holds two
// secrets of a period at most, a proven edge's outrank the rest, and a
// source holding one is never evicted.
func TestEarlyReleaseFloodBeforeAnyShard(t *testing.T) {
	for _, tc := range []struct {
		name      string
		addresses int  // attacking addresses
		proven    bool // the edge delivered a period before
	}{
		{"one address", 1, false},
		{"a thousand addresses, proven edge", 1000, true},
		{"a thousand addresses, genuine first", 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, s, r := setup(t)
				before, _ := f.keys(t, 1, 2)
				feed(r, before.Shards...)
				if tc.proven {
					feed(r, release(t, before, 1))
				}
				var next [16]*bundle.Bundle // periods 3 … 18: all the receiver would hold
				for i := range next {
					next[i], _ = f.keys(t, 1, uint64(3+i))
				}
				n := 0
				flood := func(count int) {
					for range count {
						b := next[n%len(next)]
						r.Handle(forgedRelease(t, b, n), time.Time{}, attacker(n%tc.addresses))
						n++
					}
				}
				target := next[0]
				if tc.proven || tc.addresses == 1 {
					flood(20_000)
				}
				feed(r, release(t, target, 1))
				flood(20_000)
				had := len(s.got())
				feed(r, target.Shards...)
				got := s.got()[had:]
				if len(got) != 1 || got[0].Period != target.Period || got[0].EdgeID != 1 {
					t.Fatalf("genuine early RELEASE pushed out by the flood: events %+v; drops %v", got, r.Stats().Drops)
				}
				if st := r.Stats(); st.Drops["busy"] < 10_000 {
					t.Fatalf("flood not bounded: drops %v", st.Drops)
				}
			})
		})
	}
}

// With Sources, datagrams from any other address — forged shards and
// RELEASEs alike — are dropped before they are decoded, counted, and cost
// no signature check; the configured edge's, IPv4-mapped or not, are
// taken.
func TestSourcesDropOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		s := new(sink)
		r := f.receiver(t, s, func(c *receiver.Config) { c.Sources = []netip.Addr{edgeAddr.Addr()} })
		b := multiShard(t, f, 3)
		evil := attacker(1)
		r.Handle(forgedShard(t, b.Shards[0], 1), time.Time{}, evil)
		for i := range 100 {
			r.Handle(forgedRelease(t, b, i), time.Time{}, evil)
		}
		r.Handle(release(t, b, 1), time.Time{}, evil) // even the genuine secret, from elsewhere
		r.Handle(release(t, b, 1), time.Time{}, netip.AddrPort{})
		if st := r.Stats(); st.Drops["foreign-source"] != 103 || st.SignatureChecks() != 0 || len(st.Drops) != 1 {
			t.Fatalf("from other addresses: drops %v, %d signature checks", st.Drops, st.SignatureChecks())
		}
		mapped := netip.AddrPortFrom(netip.AddrFrom16(edgeAddr.Addr().As16()), edgeAddr.Port())
		r.Handle(b.Shards[0], time.Time{}, mapped)
		feed(r, b.Shards[1:]...)
		feed(r, release(t, b, 1))
		if got := s.got(); len(got) != 1 || got[0].Period != 3 {
			t.Fatalf("the configured edge's period: events %+v; drops %v", got, r.Stats().Drops)
		}
	})
}

func TestSourcesConfig(t *testing.T) {
	f := newFixture(t)
	_, err := receiver.New(receiver.Config{Trusted: f.ring, Streams: []uint32{1}, OnEvent: func(receiver.Event) {}, Sources: []netip.Addr{{}}})
	if !errors.Is(err, receiver.ErrConfig) {
		t.Fatalf("an invalid source address: %v, want ErrConfig", err)
	}
}

// TestSourcesLinkLocal: an edge configured by its link-local address
// matches datagrams that arrive with the interface's zone, as the kernel
// filter (which sees no zone) lets them through.
func TestSourcesLinkLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		s := new(sink)
		r := f.receiver(t, s, func(c *receiver.Config) { c.Sources = []netip.Addr{netip.MustParseAddr("fe80::1")} })
		b := multiShard(t, f, 3)
		from := netip.MustParseAddrPort("[fe80::1%eth0]:7171")
		for _, sh := range b.Shards {
			r.Handle(sh, time.Time{}, from)
		}
		r.Handle(release(t, b, 1), time.Time{}, from)
		if got := s.got(); len(got) != 1 || got[0].Period != 3 {
			t.Fatalf("events %+v; drops %v", got, r.Stats().Drops)
		}
	})
}

// A receiver starved of CPU — each root check takes 2 ms, under 500 a
// second — under a flood of forged roots from other addresses at 10,000
// datagrams a second, each root resent more often than the genuine set's
// k+m shards, still verifies the genuine root of every period before its
// RELEASE and delivers it at the RELEASE. The flood mints about 1,500
// roots a second, three times what the receiver can check. Sent as whole
// forged sets of k+m distinct shards twice over, it kept the genuine root
// of a period from ever being checked while checks went to the root seen
// most often, and arrivals with the queue of checks full were not counted
// at all; now every arrival counts, the edge, proven by its first
// RELEASE, ranks its roots above every other address's, and a resent
// shard counts nothing (the other flood: one forged shard 2(k+m)+1 times).
func TestStarvedReceiverCannotBeOutbid(t *testing.T) {
	const (
		periods = 6
		lead    = 2 * time.Second           // the edge's carousel starts this far before releaseAt
		round   = 250 * time.Millisecond    // its rounds
		step    = 100 * time.Microsecond    // one forged datagram each: 10,000 a second
		check   = 2050*time.Microsecond + 1 // what one root check costs the starved receiver: back to back, never ending at a step
	)
	for _, whole := range []bool{false, true} {
		name := map[bool]string{false: "one shard resent", true: "whole sets resent"}[whole]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				s := new(sink)
				r := f.receiver(t, s, nil)
				receiver.SlowChecks(r, check)
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				go func() { done <- r.Run(ctx) }()
				synctest.Wait() // Run's checker is up: checks leave the datagram path
				bundles := make([]*bundle.Bundle, periods+1)
				for p := 1; p <= periods; p++ {
					bundles[p], _ = f.keys(t, 1, uint64(p))
				}
				// The attacker's datagrams, in the order it sends them.
				n := len(bundles[1].Shards)
				per := 2*n + 1 // datagrams of each forged root
				if whole {
					per = 2 * n
				}
				// Each forged root's datagrams are made once, at its first.
				made, set := -1, [][]byte(nil)
				forged := func(i int) []byte {
					root := i / per
					if root != made {
						made = root
						b := bundles[2+root%(periods-1)] // every period it awaits, in turn
						if !whole {
							set = [][]byte{forgedShard(t, b.Shards[0], uint64(root+1))} // the same shard 2(k+m)+1 times
						} else {
							var err error
							if set, err = fectest.ForgeSetDatagrams(b.Shards[0], uint64(root+1)); err != nil { // the whole set twice
								t.Fatal(err)
							}
						}
					}
					return set[i%len(set)]
				}
				sent := 0
				for at := time.Duration(0); at <= periods*time.Second; at += step {
					if at > time.Second { // period 1, unattacked, proved the edge
						// The attacker's datagram comes first at each step, so
						// it takes any check the checker has just made room for.
						r.Handle(forged(sent), time.Time{}, attacker(sent%50))
						sent++
					}
					for p := 1; p <= periods; p++ {
						releaseAt := time.Duration(p) * time.Second
						if d := releaseAt - at; d > 0 && d <= lead && (lead-d)%round == 0 {
							feed(r, bundles[p].Shards...)
						}
						if at == releaseAt {
							feed(r, release(t, bundles[p], 1))
						}
					}
					time.Sleep(step)
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				got := map[uint64]receiver.Event{}
				for _, ev := range s.got() {
					got[ev.Period] = ev
				}
				st := r.Stats()
				for p := uint64(1); p <= periods; p++ {
					ev, ok := got[p]
					if !ok {
						t.Fatalf("period %d missed under %d forged datagrams: %d checks, drops %v", p, sent, st.Assembly.Verified, st.Drops)
					}
					if ev.Opened > ev.ReleaseAt {
						t.Fatalf("period %d opened %v after its RELEASE: its root was not verified in time", p, time.Duration(ev.Opened-ev.ReleaseAt))
					}
				}
				if minted, capacity := sent/per, int((periods-1)*time.Second/check); minted < capacity {
					t.Fatalf("the flood minted %d roots, fewer than the %d the receiver could check", minted, capacity)
				}
				t.Logf("%d forged datagrams; %d roots checked, %d forged", sent, st.Assembly.Verified, st.Assembly.Failed)
			})
		})
	}
}
