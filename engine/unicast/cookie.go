package unicast

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// cookieJar mints and checks stateless cookies (PROTOCOL.md §4.2):
// window ‖ HMAC-SHA256(secret_window, window ‖ address ‖ port)[:16]. The
// secret of each window is derived from one random key, so secrets rotate
// every lifetime without timers; a cookie of the previous window is still
// accepted, so a cookie lives between one and two lifetimes.
type cookieJar struct {
	key      [32]byte
	lifetime int64 // ns

	mu      sync.Mutex
	secrets [2]windowSecret // the two most recently used windows
}

type windowSecret struct {
	window uint64
	secret [32]byte
	ok     bool
}

func newCookieJar(key [32]byte, lifetime time.Duration) *cookieJar {
	return &cookieJar{key: key, lifetime: int64(lifetime)}
}

func (j *cookieJar) window(now int64) uint64 { return uint64(now / j.lifetime) }

// secret returns window w's secret, derived once and cached.
func (j *cookieJar) secret(w uint64) [32]byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, s := range j.secrets {
		if s.ok && s.window == w {
			return s.secret
		}
	}
	m := hmac.New(sha256.New, j.key[:])
	m.Write([]byte("embargo/v1 cookie secret"))
	m.Write(binary.BigEndian.AppendUint64(nil, w))
	var s windowSecret
	copy(s.secret[:], m.Sum(nil))
	s.window, s.ok = w, true
	// Keep the newer of the two cached windows.
	if j.secrets[0].window > j.secrets[1].window {
		j.secrets[1] = s
	} else {
		j.secrets[0] = s
	}
	return s.secret
}

func (j *cookieJar) mac(w uint64, addr netip.AddrPort) [16]byte {
	secret := j.secret(w)
	m := hmac.New(sha256.New, secret[:])
	var msg [8 + 16 + 2]byte
	binary.BigEndian.PutUint64(msg[0:], w)
	a := addr.Addr().As16()
	copy(msg[8:], a[:])
	binary.BigEndian.PutUint16(msg[24:], addr.Port())
	m.Write(msg[:])
	var out [16]byte
	copy(out[:], m.Sum(nil))
	return out
}

// mint returns the cookie for addr at now.
func (j *cookieJar) mint(addr netip.AddrPort, now int64) [wire.CookieLen]byte {
	var c [wire.CookieLen]byte
	w := j.window(now)
	binary.BigEndian.PutUint64(c[:8], w)
	mac := j.mac(w, addr)
	copy(c[8:], mac[:])
	return c
}

// valid reports whether c was minted for addr in this window or the last.
func (j *cookieJar) valid(c *[wire.CookieLen]byte, addr netip.AddrPort, now int64) bool {
	w := binary.BigEndian.Uint64(c[:8])
	if cur := j.window(now); w != cur && w+1 != cur {
		return false
	}
	mac := j.mac(w, addr)
	return hmac.Equal(mac[:], c[8:])
}
