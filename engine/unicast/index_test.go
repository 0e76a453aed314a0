package unicast

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"
)

// TestAddrIndexModel runs random inserts, moves and removes through the
// index and a map beside it: every lookup and every count agrees, through
// growth, shrinking and the shifts that close gaps.
func TestAddrIndexModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Few addresses and sites, many ports: long runs, many collisions.
	pick := func() addrKey {
		var ip netip.Addr
		if rng.IntN(2) == 0 {
			ip = netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(8))})
		} else {
			ip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(rng.IntN(4)), 15: byte(rng.IntN(8))})
		}
		return keyOf(netip.AddrPortFrom(ip, uint16(rng.IntN(40))))
	}
	x := newAddrIndex(64)
	var subs []sub
	var free []uint32
	model := map[addrKey]uint32{}
	check := func(step int) {
		if x.len() != len(model) {
			t.Fatalf("step %d: %d indexed, want %d", step, x.len(), len(model))
		}
		perAddr, perSite := map[[16]byte]int{}, map[[16]byte]int{}
		for k, slot := range model {
			if got, ok := x.find(subs, k); !ok || got != slot {
				t.Fatalf("step %d: find %v = %d %v, want %d", step, k.addrPort(), got, ok, slot)
			}
			perAddr[k.ip()]++
			perSite[siteOf(k.ip(), 64)]++
		}
		for range 8 {
			k := pick()
			if _, in := model[k]; !in {
				if _, ok := x.find(subs, k); ok {
					t.Fatalf("step %d: found %v, never indexed", step, k.addrPort())
				}
			}
			a, s := x.count(subs, k.ip())
			if a != perAddr[k.ip()] || s != perSite[siteOf(k.ip(), 64)] {
				t.Fatalf("step %d: count %v = %d, %d; want %d, %d", step, k.addrPort(), a, s, perAddr[k.ip()], perSite[siteOf(k.ip(), 64)])
			}
		}
	}
	for step := range 20_000 {
		k := pick()
		slot, in := model[k]
		switch {
		case !in && step%5000 < 3000: // grow for a while, then shrink
			if n := len(free); n > 0 {
				slot, free = free[n-1], free[:n-1]
			} else {
				subs = append(subs, sub{})
				slot = uint32(len(subs) - 1)
			}
			subs[slot] = sub{key: k, tag: [4]byte{1}}
			x.insert(subs, slot)
			model[k] = slot
		case in && rng.IntN(3) == 0: // move, as a RESPONSE does
			to := pick()
			if _, taken := model[to]; taken {
				continue
			}
			x.remove(subs, slot)
			subs[slot].key = to
			x.insert(subs, slot)
			delete(model, k)
			model[to] = slot
		case in:
			x.remove(subs, slot)
			subs[slot] = sub{}
			free = append(free, slot)
			delete(model, k)
		}
		if step%97 == 0 {
			check(step)
		}
	}
	check(-1)
	if len(x.table) > minIndex && 8*x.n < len(x.table) {
		t.Fatalf("table of %d for %d entries: never shrank", len(x.table), x.n)
	}
}

// TestSubSize pins the slot's size: it is most of an edge's memory per
// subscriber (BenchmarkEdgeMemory).
func TestSubSize(t *testing.T) {
	if n := unsafe.Sizeof(sub{}); n != 32 {
		t.Fatalf("sub is %d bytes, want 32", n)
	}
}
