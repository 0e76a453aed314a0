package webedge

import (
	"hash/maphash"
	"slices"

	"github.com/embargo-live/embargo/wire"
)

// A session is reliable and in order, so of what the edge sends for UDP's
// losses a browser is sent only what it needs: a RELEASE's first copy
// (WebTransport: and its second, on the stream), and each ANNOUNCE shard
// once, not every carousel round (Send counts the rest).

// releaseKey names a RELEASE whatever its copy.
type releaseKey struct {
	stream uint32
	period uint64
}

// sentRelease is a RELEASE a session has been sent and how many of its
// copies it has seen.
type sentRelease struct {
	key    releaseKey
	copies int
}

// sentReleases is how many RELEASEs a session remembers: the streams
// released at one instant, whose copies follow within milliseconds.
// Beyond it a copy is sent again, which costs a message, never a
// period.
const sentReleases = 8

// copies sorts msgs (RELEASEs named by keys) by which copy each is for
// c: first copies appended to first, second copies to second, later
// ones dropped. A zero key (no stream: not a RELEASE the edge makes)
// always counts as a first copy.
func (c *conn) copies(msgs [][]byte, keys []releaseKey, first, second [][]byte) (_, _ [][]byte) {
	c.relMu.Lock()
	defer c.relMu.Unlock()
	for i, k := range keys {
		if k == (releaseKey{}) {
			first = append(first, msgs[i])
			continue
		}
		j := slices.IndexFunc(c.sent[:], func(r sentRelease) bool { return r.key == k })
		if j < 0 {
			c.sent[c.next] = sentRelease{key: k, copies: 1}
			c.next = (c.next + 1) % sentReleases
			first = append(first, msgs[i])
			continue
		}
		c.sent[j].copies++
		if c.sent[j].copies == 2 {
			second = append(second, msgs[i])
		}
	}
	return first, second
}

// announceKey names one ANNOUNCE datagram: its stream and period, and a
// hash of its bytes — a period's shards, each sent again every round,
// byte for byte.
type announceKey struct {
	period releaseKey
	sum    uint64
}

// maxAnnounced bounds the periods a stream has whose ANNOUNCE datagrams a
// session remembers (wire.MaxAnnounceLead are pending at most). Beyond
// it the session forgets them all, which costs repeats, never a period:
// Send's limit is maxAnnounced times the streams served.
const maxAnnounced = 4 * wire.MaxAnnounceLead

// announceKeys names each ANNOUNCE datagram of msgs. One that does not
// parse gets a zero key and is always sent.
func (s *Server) announceKeys(msgs [][]byte) []announceKey {
	keys := make([]announceKey, len(msgs))
	for i, m := range msgs {
		if h, err := wire.Peek(m); err == nil && h.Type == wire.TypeAnnounce {
			keys[i] = announceKey{period: releaseKey{stream: h.Stream, period: h.Period}, sum: maphash.Bytes(s.seed, m)}
		}
	}
	return keys
}

// unannounced appends to out the msgs (ANNOUNCE datagrams named by keys)
// not yet queued to c, and remembers them as queued, at most limit
// periods' worth: a session is reliable and in order, so one copy of a
// period's shards is all it needs of the carousel's rounds. Periods whose
// RELEASE the session has been queued since are forgotten first, here on
// the ANNOUNCE path rather than at the release, whose fan-out touches
// every session.
func (c *conn) unannounced(msgs [][]byte, keys []announceKey, out [][]byte, limit int) [][]byte {
	c.annMu.Lock()
	defer c.annMu.Unlock()
	c.forgetReleased()
	for i, k := range keys {
		if k == (announceKey{}) {
			out = append(out, msgs[i])
			continue
		}
		sums := c.announced[k.period]
		if slices.Contains(sums, k.sum) {
			continue
		}
		if c.announced == nil || (sums == nil && len(c.announced) >= limit) {
			c.announced = make(map[releaseKey][]uint64)
		}
		c.announced[k.period] = append(sums, k.sum)
		out = append(out, msgs[i])
	}
	return out
}

// forgetReleased forgets the periods, remembered in announced, that a
// RELEASE the session was queued (sent) covers: the carousel is done with
// them. The caller holds annMu; it takes relMu (always in that order).
func (c *conn) forgetReleased() {
	if len(c.announced) == 0 {
		return
	}
	c.relMu.Lock()
	defer c.relMu.Unlock()
	for _, r := range c.sent {
		if r.copies == 0 {
			continue
		}
		for k := range c.announced {
			if k.stream == r.key.stream && k.period <= r.key.period {
				delete(c.announced, k)
			}
		}
	}
}

// released forgets the ANNOUNCE datagrams of k's period, released before
// the session joined (its catch-up).
func (c *conn) released(k releaseKey) {
	c.annMu.Lock()
	delete(c.announced, k)
	c.annMu.Unlock()
}
