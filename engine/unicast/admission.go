package unicast

import (
	"time"

	"github.com/embargo-live/embargo/wire"
)

// Admission (PROTOCOL.md §4.12): what a SUBSCRIBE must pass once its
// cookie proved its address. Spoofed sources never get this far, so none
// of these limits can be spent by someone else on a victim's behalf.

// Defaults for the admission limits of SessionConfig.
const (
	// DefaultPrefixBits is the IPv6 prefix treated as one site (one
	// household or office is usually given a /64).
	DefaultPrefixBits = 64
	// DefaultSubscribeRate and DefaultSubscribeBurst bound the SUBSCRIBEs
	// a proven address or IPv6 prefix may make: the burst lets a large
	// NAT resubscribe at once after an edge restart.
	DefaultSubscribeRate  = 64
	DefaultSubscribeBurst = DefaultMaxPerAddress
	// DefaultTokenMaxLife is the longest a subscription token may still
	// have to live: an origin issues short-lived ones.
	DefaultTokenMaxLife = time.Hour
	// maxBuckets bounds the rate limiter's table; past it, full buckets
	// are dropped first and, failing that, the table is cleared (every
	// site starts with a full burst again, which is the safe way to err).
	maxBuckets = 1 << 16
)

// siteOf is the key limits are counted against: an IPv4 address, or an
// IPv6 address cut to bits.
func siteOf(ip [16]byte, bits int) [16]byte {
	if isV4(ip) {
		return ip
	}
	for i := range ip {
		switch {
		case bits >= 8*(i+1):
		case bits > 8*i:
			ip[i] &= ^byte(0) << (8*(i+1) - bits)
		default:
			ip[i] = 0
		}
	}
	return ip
}

// isV4 reports whether ip is an IPv4-mapped address.
func isV4(ip [16]byte) bool {
	return ip[10] == 0xff && ip[11] == 0xff && [10]byte(ip[:10]) == [10]byte{}
}

// bucket is a token bucket: tokens at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

// limiter is a token bucket per site. Not safe for concurrent use:
// Sessions holds its lock.
type limiter struct {
	rate, burst float64
	buckets     map[[16]byte]bucket
}

func newLimiter(rate, burst int) *limiter {
	return &limiter{rate: float64(rate), burst: float64(burst), buckets: make(map[[16]byte]bucket)}
}

// take spends a token of site at now, or says how long until one.
func (l *limiter) take(site [16]byte, now time.Time) (bool, time.Duration) {
	return l.takeN(site, now, 1)
}

// takeN spends n tokens of site at now, or says how long until there are
// n (never, if n is more than the burst: the wait is then for a full
// bucket).
func (l *limiter) takeN(site [16]byte, now time.Time, n float64) (bool, time.Duration) {
	b, ok := l.buckets[site]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = bucket{tokens: l.burst, at: now}
	}
	b.tokens = min(l.burst, b.tokens+l.rate*max(now.Sub(b.at), 0).Seconds())
	b.at = now
	if b.tokens < n {
		l.buckets[site] = b
		return false, time.Duration((min(n, l.burst) - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens -= n
	l.buckets[site] = b
	return true, 0
}

// prune drops the buckets that have refilled by now. A Go map keeps its
// size after deletes, so the survivors move to a new one: after a mass
// (re)subscription the table gives its memory back at the next sweep.
func (l *limiter) prune(now time.Time) {
	if len(l.buckets) == 0 {
		return
	}
	keep := make(map[[16]byte]bucket)
	for k, b := range l.buckets {
		if b.tokens+l.rate*now.Sub(b.at).Seconds() < l.burst {
			keep[k] = b
		}
	}
	if len(keep) >= maxBuckets {
		clear(keep)
	}
	l.buckets = keep
}

// admit says why a new subscription from key may not be made, or 0.
// s.mu is held.
func (s *Sessions) admit(key addrKey) wire.Reason {
	if s.index.len() >= s.cfg.MaxSubscribers {
		return wire.ReasonEdgeFull
	}
	ip := key.ip()
	perAddr, perSite := s.index.count(s.subs, ip)
	if perAddr >= s.cfg.MaxPerAddress || !isV4(ip) && perSite >= s.cfg.MaxPerPrefix {
		return wire.ReasonAddressLimit
	}
	return 0
}

// checkToken verifies a SUBSCRIBE's token when tokens are required. It
// reads only what does not change, so it needs no lock.
func (s *Sessions) checkToken(tok []byte, now time.Time) bool {
	if s.cfg.Tokens == nil {
		return true
	}
	_, err := s.cfg.Tokens.VerifyToken(tok, s.cfg.TAIOffset.FromTime(now), int64(s.cfg.TokenMaxLife))
	return err == nil
}
