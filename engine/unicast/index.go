package unicast

import "hash/maphash"

// addrIndex finds a subscription by its address and port, and counts the
// subscriptions of an address and of its site (siteOf), in 4 bytes per
// table entry: an open-addressing table of slot numbers that reads the
// addresses from the slots themselves. A Go map keyed by the address kept
// a copy of every key and, with the per-address and per-prefix count maps
// it replaces, cost some 70 bytes per subscriber of the 128 an edge may
// spend (PROTOCOL.md §4.12).
//
// Every entry is placed by the hash of its site, not of its address and
// port, so the subscriptions of a site lie in one run of the table that
// ends at an empty entry (linear probing; deletes shift back, so no run
// is ever broken): counting them walks that run. A run is bounded by the
// admission limits, and only SUBSCRIBE and RESPONSE, whose cookies prove
// their address, look anything up. Not safe for concurrent use: Sessions
// holds its lock.
type addrIndex struct {
	table []uint32 // 1 + slot, or 0 for empty; a power of two long
	n     int
	bits  int // the IPv6 prefix that is a site
	seed  maphash.Seed
}

// minIndex is the smallest table: it never shrinks below it.
const minIndex = 64

func newAddrIndex(prefixBits int) addrIndex {
	return addrIndex{table: make([]uint32, minIndex), bits: prefixBits, seed: maphash.MakeSeed()}
}

func (x *addrIndex) len() int { return x.n }

// home is where the entries of ip's site start looking.
func (x *addrIndex) home(ip [16]byte) int {
	return int(maphash.Comparable(x.seed, siteOf(ip, x.bits))) & (len(x.table) - 1)
}

// find returns the slot of the subscription at k.
func (x *addrIndex) find(subs []sub, k addrKey) (uint32, bool) {
	mask := len(x.table) - 1
	for i := x.home(k.ip()); x.table[i] != 0; i = (i + 1) & mask {
		if slot := x.table[i] - 1; subs[slot].key == k {
			return slot, true
		}
	}
	return 0, false
}

// count returns the subscriptions of ip and of its site.
func (x *addrIndex) count(subs []sub, ip [16]byte) (perAddr, perSite int) {
	site := siteOf(ip, x.bits)
	mask := len(x.table) - 1
	for i := x.home(ip); x.table[i] != 0; i = (i + 1) & mask {
		other := subs[x.table[i]-1].key.ip()
		if other == ip {
			perAddr++
			perSite++
		} else if siteOf(other, x.bits) == site {
			perSite++
		}
	}
	return perAddr, perSite
}

// insert records slot, whose key is subs[slot].key and not yet indexed.
func (x *addrIndex) insert(subs []sub, slot uint32) {
	if 2*(x.n+1) > len(x.table) {
		x.resize(subs, 2*len(x.table))
	}
	x.place(subs, slot)
	x.n++
}

func (x *addrIndex) place(subs []sub, slot uint32) {
	mask := len(x.table) - 1
	i := x.home(subs[slot].key.ip())
	for x.table[i] != 0 {
		i = (i + 1) & mask
	}
	x.table[i] = slot + 1
}

// remove forgets slot, indexed under subs[slot].key, and closes the gap
// by moving back the entries after it that may take it.
func (x *addrIndex) remove(subs []sub, slot uint32) {
	mask := len(x.table) - 1
	i := x.home(subs[slot].key.ip())
	for x.table[i] != slot+1 {
		if x.table[i] == 0 {
			return // not indexed
		}
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; x.table[j] != 0; j = (j + 1) & mask {
		// The entry at j may move to the gap at i unless its home lies
		// after i (cyclically, up to j): then it would no longer be
		// reachable from there.
		if h := x.home(subs[x.table[j]-1].key.ip()); (j-h)&mask >= (j-i)&mask {
			x.table[i] = x.table[j]
			i = j
		}
	}
	x.table[i] = 0
	x.n--
	if 8*x.n < len(x.table) && len(x.table) > minIndex {
		x.resize(subs, len(x.table)/2)
	}
}

// resize moves the entries into a table of size entries.
func (x *addrIndex) resize(subs []sub, size int) {
	old := x.table
	x.table = make([]uint32, size)
	for _, e := range old {
		if e != 0 {
			x.place(subs, e-1)
		}
	}
}
