package fec_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/fec/fectest"
	"github.com/embargo-live/embargo/wire"
)

// forge is an attacker's shard for s's period and geometry with a root of
// its own, claiming the origin's key.
func forge(s *wire.Shard, nonce uint64) *wire.Shard { return fectest.Forge(s, nonce) }

// virtualClock is an assembler clock that the test moves.
type virtualClock struct{ now int64 }

func (c *virtualClock) read() int64             { return c.now }
func (c *virtualClock) advance(d time.Duration) { c.now += int64(d) }

// One forged shard, resent 10,000 times for a period whose genuine set has
// not come yet, costs one signature check: the failed root is remembered.
// The genuine set then rebuilds at the cost of one more.
func TestForgedShardCheckedOnce(t *testing.T) {
	b := body(500, 3)
	g := fec.Geometry{K: 2, M: 2, ShardSize: 250, BodyLen: len(b)}
	for _, ahead := range []uint64{1, 3} {
		ds := datagrams(t, b, g, 1, 100+ahead)
		a := fec.NewAssembler(ring())
		// The stream's newest verified period is 100.
		if _, err := a.Add(decode(t, datagrams(t, body(500, 4), g, 1, 100)[0])); err != nil {
			t.Fatal(err)
		}
		evil := forge(decode(t, ds[1]), 7)
		for i := range 10_000 {
			_, err := a.Add(evil)
			want := fec.ErrRepeatForged
			if i == 0 {
				want = fec.ErrForged
			}
			if !errors.Is(err, want) || (i == 0 && errors.Is(err, fec.ErrRepeatForged)) {
				t.Fatalf("current+%d, resend %d: %v, want %v", ahead, i, err, want)
			}
		}
		if st := a.Stats(); st.Verified != 2 || st.Failed != 1 || st.Remembered != 1 {
			t.Fatalf("current+%d: after 10,000 resends: %+v, want 2 checks (genuine period 100, the forgery once)", ahead, st)
		}
		var out []byte
		for _, d := range ds[:2] {
			out, _ = a.Add(decode(t, d))
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("current+%d: genuine body not rebuilt", ahead)
		}
		if st := a.Stats(); st.Verified != 3 {
			t.Fatalf("current+%d: %d checks, want 3", ahead, st.Verified)
		}
	}
}

// An attacker sending forged roots at 50,000 datagrams a second — a new
// root with every datagram, or each root's shard sent 2, 5 or 64 times in
// a row (resends count nothing: each ranks below the genuine set's k+m = 4
// distinct shards) — from 300 ms before the genuine carousel starts
// (rounds 250 ms apart) does not keep the genuine root from being checked
// within two rounds, and costs no more checks than the budget allows.
func TestDistinctForgedRootsCannotStarve(t *testing.T) {
	b := body(500, 5)
	g := fec.Geometry{K: 2, M: 2, ShardSize: 250, BodyLen: len(b)}
	ds := datagrams(t, b, g, 1, 9)
	template := decode(t, ds[0])
	const (
		rate  = 50_000
		first = 300 * time.Millisecond // the first carousel round
		round = 250 * time.Millisecond
		limit = first + round // rebuilt by the second round
	)
	for _, repeats := range []uint64{1, 2, 5, 64} {
		var clock virtualClock
		a := fec.NewAssembler(ring(), fec.WithClock(clock.read))
		rebuilt := time.Duration(-1)
		var sent uint64
		var elapsed time.Duration
		for ; elapsed <= limit && rebuilt < 0; elapsed += time.Second / rate {
			clock.advance(time.Second / rate)
			if elapsed >= first && (elapsed-first)%round == 0 {
				for _, d := range ds {
					if out, _ := a.Add(decode(t, d)); out != nil {
						if !bytes.Equal(out, b) {
							t.Fatal("wrong body")
						}
						rebuilt = elapsed
					}
				}
			}
			if _, err := a.Add(forge(template, sent/repeats)); err == nil {
				t.Fatal("forged shard accepted")
			}
			sent++
		}
		st := a.Stats()
		if rebuilt < 0 {
			t.Fatalf("each root %d×: genuine period not rebuilt in two rounds against %d forged datagrams: %+v", repeats, sent, st)
		}
		budget := uint64(fec.DefaultGlobalBurst + float64(fec.DefaultGlobalChecks)*elapsed.Seconds())
		if st.Verified > budget {
			t.Fatalf("each root %d×: %d checks in %v; the budget is %d", repeats, st.Verified, elapsed, budget)
		}
		t.Logf("each root %d×: genuine rebuilt in round %d; %d checks for %d forged roots", repeats, (rebuilt-first)/round+1, st.Verified, sent/repeats)
	}
}

// Shards beyond the announce horizon of a fresh stream are dropped before
// any check; once the stream's newest is stale, the horizon opens so that a
// receiver back from an outage recovers.
func TestHorizon(t *testing.T) {
	g := fec.Geometry{K: 1, M: 2, ShardSize: 100, BodyLen: 100}
	var clock virtualClock
	a := fec.NewAssembler(ring(), fec.WithClock(clock.read), fec.WithHorizon(4, 10*time.Second))
	if _, err := a.Add(decode(t, datagrams(t, body(100, 1), g, 1, 10)[0])); err != nil {
		t.Fatal(err)
	}
	far := datagrams(t, body(100, 2), g, 1, 15)
	if _, err := a.Add(forge(decode(t, far[0]), 1)); !errors.Is(err, fec.ErrFuture) {
		t.Fatalf("forged shard beyond the horizon: %v", err)
	}
	if _, err := a.Add(decode(t, far[0])); !errors.Is(err, fec.ErrFuture) {
		t.Fatalf("shard beyond the horizon: %v", err)
	}
	if st := a.Stats(); st.Verified != 1 {
		t.Fatalf("%d checks, want 1", st.Verified)
	}
	if out, err := a.Add(decode(t, datagrams(t, body(100, 3), g, 1, 14)[0])); err != nil || out == nil {
		t.Fatalf("period at the horizon: %v", err)
	}
	clock.advance(11 * time.Second)
	if out, err := a.Add(decode(t, datagrams(t, body(100, 4), g, 1, 40)[0])); err != nil || out == nil {
		t.Fatalf("after the stream went stale: %v", err)
	}
}

// A shard naming a key id the ring does not hold is refused without a
// check and without spending the budget.
func TestUnknownKeyCostsNothing(t *testing.T) {
	g := fec.Geometry{K: 1, M: 2, ShardSize: 100, BodyLen: 100}
	a := fec.NewAssembler(ring())
	s := decode(t, datagrams(t, body(100, 1), g, 1, 1)[0])
	s.KeyID[0] ^= 1
	for range 1000 {
		if _, err := a.Add(s); !errors.Is(err, fec.ErrForged) {
			t.Fatalf("unknown key id: %v", err)
		}
	}
	if st := a.Stats(); st.Verified != 0 {
		t.Fatalf("%d checks for an unknown key id", st.Verified)
	}
}

// With WithAsyncChecks, Add never checks a signature: it defers the check
// to its caller, holds the shards of the root meanwhile, and Checked stores
// them (or refuses them all, remembering the forged root).
func TestAsyncChecks(t *testing.T) {
	b := body(500, 8)
	g := fec.Geometry{K: 2, M: 2, ShardSize: 250, BodyLen: len(b)}
	ds := datagrams(t, b, g, 1, 4)
	a := fec.NewAssembler(ring(), fec.WithAsyncChecks())
	evil := forge(decode(t, ds[0]), 3)
	for range 3 {
		if _, err := a.Add(evil); !errors.Is(err, fec.ErrCheckPending) {
			t.Fatalf("forged shard, check not yet run: %v", err)
		}
	}
	for _, d := range ds[:2] {
		if _, err := a.Add(decode(t, d)); !errors.Is(err, fec.ErrDeferred) && !errors.Is(err, fec.ErrCheckPending) {
			t.Fatalf("genuine shard: %v", err)
		}
	}
	if st := a.Stats(); st.Verified != 0 {
		t.Fatalf("Add checked %d signatures", st.Verified)
	}
	var got []byte
	for i := 0; ; i++ {
		c, ok := a.NextCheck()
		if !ok {
			break
		}
		body, unstored, err := a.Checked(c, c.Verify(ring()))
		if i == 0 { // the forged root's check came first
			if !errors.Is(err, fec.ErrForged) || unstored != 3 {
				t.Fatalf("forged check: %v, %d datagrams refused, want the 3 that waited", err, unstored)
			}
			if _, err := a.Add(evil); !errors.Is(err, fec.ErrRepeatForged) {
				t.Fatalf("forged shard after its check: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			got = body // the genuine shards held with the check complete it
		}
	}
	if !bytes.Equal(got, b) {
		t.Fatal("genuine body not rebuilt")
	}
	if st := a.Stats(); st.Verified != 2 || st.Failed != 1 {
		t.Fatalf("checks %+v, want 2 (1 failed)", st)
	}
}

// An attacker who floods the neighbouring periods at 50,000 datagrams a
// second with roots sent twice each — every one worth a check at its second
// copy, 25,000 checks a second wanted, twice the budget shared by all
// periods — does not keep the genuine root of a period it leaves alone
// from being checked in its first round, in either checking mode.
func TestNeighbourFloodCannotStarve(t *testing.T) {
	b := body(500, 6)
	g := fec.Geometry{K: 2, M: 2, ShardSize: 250, BodyLen: len(b)}
	ds := datagrams(t, b, g, 1, 10)
	templates := []*wire.Shard{decode(t, datagrams(t, body(500, 7), g, 1, 11)[0]), decode(t, datagrams(t, body(500, 8), g, 1, 12)[0])}
	const (
		rate  = 50_000
		first = 50 * time.Millisecond // the flood has drained the shared budget by then
	)
	for _, async := range []bool{false, true} {
		for trial := range 4 { // phases 7 µs apart, across a whole 20 µs arrival gap
			var clock virtualClock
			opts := []fec.Option{fec.WithClock(clock.read)}
			if async {
				opts = append(opts, fec.WithAsyncChecks())
			}
			a := fec.NewAssembler(ring(), opts...)
			checks := 0
			drain := func() (out []byte) { // the checker: one check per 60 µs
				for c, ok := a.NextCheck(); ok && checks < int(clock.now/int64(60*time.Microsecond)); c, ok = a.NextCheck() {
					checks++
					if body, _, _ := a.Checked(c, c.Verify(ring())); body != nil {
						out = body
					}
				}
				return out
			}
			var rebuilt, round bool
			var sent uint64
			for elapsed := time.Duration(0); elapsed < first+50*time.Millisecond && !rebuilt; elapsed += time.Second / rate {
				clock.advance(time.Second / rate)
				if !round && elapsed >= first+time.Duration(trial)*time.Microsecond*7 { // the one round, at a trial's phase
					round = true
					for _, d := range ds {
						if out, _ := a.Add(decode(t, d)); out != nil {
							rebuilt = true
						}
					}
				}
				root := sent / 2 // each root twice: checked at its second copy, 25,000 checks a second wanted
				a.Add(forge(templates[root%2], root))
				sent++
				if async && drain() != nil {
					rebuilt = true
				}
			}
			if !rebuilt {
				t.Fatalf("async %v, trial %d: the genuine round lost its check to the neighbours' flood: %+v", async, trial, a.Stats())
			}
		}
	}
}

// With checks far behind — the caller's queue full — a root seen from a
// configured source keeps its place among its period's candidates against
// thousands of forged roots from less trusted sources (any address, or
// one that became a learnt source by replaying public RELEASEs), each a
// whole set of k+m distinct shards sent twice or one shard resent 1,000
// times, and is the next check of its period once there is room.
func TestTrustedRootCannotBeOutbid(t *testing.T) {
	for _, forger := range []fec.Trust{fec.Untrusted, fec.Learnt} {
		t.Run(fmt.Sprintf("forger-trust=%d", forger), func(t *testing.T) { trustedRootCannotBeOutbid(t, forger) })
	}
}

func trustedRootCannotBeOutbid(t *testing.T, forger fec.Trust) {
	b := body(500, 9)
	g := fec.Geometry{K: 2, M: 2, ShardSize: 250, BodyLen: len(b)}
	ds := datagrams(t, b, g, 1, 5)
	template := decode(t, ds[0])
	var clock virtualClock
	a := fec.NewAssembler(ring(), fec.WithClock(clock.read), fec.WithAsyncChecks())
	nonce := uint64(0)
	flood := func(sets int) {
		for range sets {
			clock.advance(5 * time.Microsecond) // all within one quiet gap: no check is due without room
			nonce++
			set, err := fectest.ForgeSet(template, nonce)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				for _, s := range set {
					a.AddFrom(s, forger)
				}
			}
		}
		for range 1000 {
			a.AddFrom(forge(template, 1<<40), forger)
		}
	}
	flood(1000) // fills the queue of checks: nothing drains it
	for _, d := range ds {
		if _, err := a.AddFrom(decode(t, d), fec.Configured); !errors.Is(err, fec.ErrDeferred) {
			t.Fatalf("genuine shard with the queue full: %v, want it deferred", err)
		}
	}
	flood(5000)
	c, _ := a.NextCheck() // the caller checks one: room for one more
	a.Checked(c, c.Verify(ring()))
	a.AddFrom(forge(template, 1<<41), forger) // the period's next check is picked
	genuine := -1
	for i := 0; ; i++ {
		c, ok := a.NextCheck()
		if !ok {
			break
		}
		err := c.Verify(ring())
		if err == nil {
			genuine = i
		} else if genuine >= 0 {
			t.Fatalf("a forged root was picked after the trusted one")
		}
		a.Checked(c, err)
	}
	if genuine < 0 {
		t.Fatalf("the trusted root was not picked at the first room: %+v", a.Stats())
	}
	var got []byte
	for _, d := range ds {
		if out, _ := a.AddFrom(decode(t, d), fec.Configured); out != nil {
			got = out
		}
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("genuine period not rebuilt: %+v", a.Stats())
	}
}
