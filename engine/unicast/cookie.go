package unicast

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// cookieJar mints and checks stateless cookies (PROTOCOL.md §4.2):
// window ‖ HMAC-SHA256(secret_window, window ‖ address ‖ port)[:16]. The
// secret of each window is derived from one random key, so secrets rotate
// every lifetime without timers; a cookie of the previous window is still
// accepted, so a cookie lives between one and two lifetimes.
//
// It is not safe for concurrent use: Sessions calls it under its lock.
// HELLO floods land here, so a keyed HMAC is kept per recent window and
// reused, and nothing is allocated per cookie.
type cookieJar struct {
	key      [32]byte
	lifetime int64        // ns
	windows  [2]windowMAC // the two most recently used windows
	sum      [sha256.Size]byte
}

type windowMAC struct {
	window uint64
	mac    hash.Hash // HMAC keyed with the window's secret; nil: unused
}

func newCookieJar(key [32]byte, lifetime time.Duration) *cookieJar {
	return &cookieJar{key: key, lifetime: int64(lifetime)}
}

// window is now's cookie window: Unix time in lifetimes.
func (j *cookieJar) window(now time.Time) uint64 { return uint64(now.UnixNano() / j.lifetime) }

// keyed returns window w's HMAC, deriving its secret on first use.
func (j *cookieJar) keyed(w uint64) hash.Hash {
	for _, m := range j.windows {
		if m.mac != nil && m.window == w {
			return m.mac
		}
	}
	d := hmac.New(sha256.New, j.key[:])
	d.Write([]byte("embargo/v1 cookie secret"))
	d.Write(binary.BigEndian.AppendUint64(nil, w))
	m := windowMAC{window: w, mac: hmac.New(sha256.New, d.Sum(nil))}
	// Replace the older of the two cached windows.
	if j.windows[0].mac == nil || (j.windows[1].mac != nil && j.windows[0].window < j.windows[1].window) {
		j.windows[0] = m
	} else {
		j.windows[1] = m
	}
	return m.mac
}

// mac is the cookie MAC of addr in window w, into out.
func (j *cookieJar) mac(out *[16]byte, w uint64, addr netip.AddrPort) {
	m := j.keyed(w)
	m.Reset()
	var msg [8 + 16 + 2]byte
	binary.BigEndian.PutUint64(msg[0:], w)
	a := addr.Addr().As16()
	copy(msg[8:], a[:])
	binary.BigEndian.PutUint16(msg[24:], addr.Port())
	m.Write(msg[:])
	copy(out[:], m.Sum(j.sum[:0]))
}

// mint returns the cookie for addr at now.
func (j *cookieJar) mint(addr netip.AddrPort, now time.Time) [wire.CookieLen]byte {
	var c [wire.CookieLen]byte
	w := j.window(now)
	binary.BigEndian.PutUint64(c[:8], w)
	j.mac((*[16]byte)(c[8:]), w, addr)
	return c
}

// valid reports whether c was minted for addr in this window or the last.
func (j *cookieJar) valid(c *[wire.CookieLen]byte, addr netip.AddrPort, now time.Time) bool {
	w := binary.BigEndian.Uint64(c[:8])
	if cur := j.window(now); w != cur && w+1 != cur {
		return false
	}
	var mac [16]byte
	j.mac(&mac, w, addr)
	return hmac.Equal(mac[:], c[8:])
}
