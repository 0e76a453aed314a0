package unicast

import (
	"crypto/ed25519"
	"net/netip"
	"testing"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// try runs HELLO and SUBSCRIBE (with token tok) from from at now.
func try(t *testing.T, s *Sessions, from netip.AddrPort, now time.Time, tok []byte) Answer {
	t.Helper()
	out := make([]byte, wire.MaxDatagram)
	var c wire.Cookie
	if err := c.Decode(s.Handle(hello(t), from, now, out).Reply); err != nil {
		t.Fatal(err)
	}
	return s.Handle(enc(t, &wire.Subscribe{KeyShare: testShare, Nonce: [8]byte{3}, Cookie: c.Cookie, Streams: []uint32{1}, Token: tok}), from, now, out)
}

// TestTokensRequired: with tokens required, an unauthenticated flood of
// SUBSCRIBEs from proven addresses subscribes nothing — missing, forged,
// expired, too long-lived, another origin's — and each is refused with
// reason 7 and counted; a genuine token subscribes.
func TestTokensRequired(t *testing.T) {
	origin := ed25519.NewKeyFromSeed(make([]byte, 32))
	other := ed25519.NewKeyFromSeed(append(make([]byte, 31), 1))
	s := newSessions(t, func(c *SessionConfig) {
		c.Tokens = seal.NewKeyRing(origin.Public().(ed25519.PublicKey))
		c.TokenMaxLife = 10 * time.Minute
	})
	tai := ptp.DefaultTAIOffset.FromTime(t0)
	genuine := seal.SignToken(origin, &wire.Token{NotAfter: tai + int64(5*time.Minute)})
	forged := append([]byte(nil), genuine...)
	forged[len(forged)-1] ^= 1
	bad := [][]byte{
		nil, forged, genuine[:40],
		seal.SignToken(origin, &wire.Token{NotAfter: tai - 1}),
		seal.SignToken(origin, &wire.Token{NotAfter: tai + int64(time.Hour)}),
		seal.SignToken(other, &wire.Token{NotAfter: tai + int64(5*time.Minute)}),
	}
	const flood = 600
	for i := range flood {
		a := try(t, s, addr(i), t0, bad[i%len(bad)])
		if a.Subscribed || refused(t, a.Reply).Reason != wire.ReasonToken {
			t.Fatalf("unauthenticated SUBSCRIBE %d answered %x", i, a.Reply)
		}
	}
	if st := s.Stats(); st.Subscribers != 0 || st.Refused[wire.ReasonToken] != flood {
		t.Fatalf("after the flood: %d subscribers, %d refused for the token; want 0, %d", st.Subscribers, st.Refused[wire.ReasonToken], flood)
	}
	if a := try(t, s, addr(flood), t0, genuine); !a.Subscribed {
		t.Fatalf("genuine token refused: %x", a.Reply)
	}
}

// TestPrefixLimit: IPv6 addresses of one /64 share its limit, whatever
// their interface ids; another /64 has its own.
func TestPrefixLimit(t *testing.T) {
	s := newSessions(t, func(c *SessionConfig) { c.MaxPerPrefix = 3 })
	v6 := func(site byte, iid uint16) netip.AddrPort {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, site, 0, 0, 0, 0, 0, 0, 0, 0, byte(iid >> 8), byte(iid)}
		return netip.AddrPortFrom(netip.AddrFrom16(a), 4000)
	}
	for i := range 3 {
		if a := try(t, s, v6(1, uint16(i)), t0, nil); !a.Subscribed {
			t.Fatalf("subscription %d of the /64 refused", i)
		}
	}
	if r := refused(t, try(t, s, v6(1, 999), t0, nil).Reply); r.Reason != wire.ReasonAddressLimit {
		t.Errorf("fourth in the /64: %v, want address-limit", r.Reason)
	}
	if a := try(t, s, v6(2, 999), t0, nil); !a.Subscribed {
		t.Error("another /64 refused")
	}
}

// TestSubscribeRate: a proven site gets its burst of SUBSCRIBEs, then
// reason 8 with the wait until the next, then the rate; HELLOs are never
// rationed, so a spoofer cannot spend a victim's budget.
func TestSubscribeRate(t *testing.T) {
	s := newSessions(t, func(c *SessionConfig) { c.SubscribeRate = 10; c.SubscribeBurst = 5 })
	from := addr(1)
	for i := range 5 {
		if a := try(t, s, from, t0, nil); !a.Subscribed {
			t.Fatalf("SUBSCRIBE %d of the burst refused", i)
		}
	}
	r := refused(t, try(t, s, from, t0, nil).Reply)
	if r.Reason != wire.ReasonBusy || r.RetryAfterMs != 100 {
		t.Errorf("past the burst: %v, retry after %d ms; want busy, 100 ms", r.Reason, r.RetryAfterMs)
	}
	if a := try(t, s, from, t0.Add(100*time.Millisecond), nil); !a.Subscribed {
		t.Error("refused after the advised wait")
	}
	if a := try(t, s, addr(2), t0, nil); !a.Subscribed {
		t.Error("another address refused")
	}
}

func TestSiteOf(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8:1:2:3:4:5:6").As16()
	for bits, want := range map[int]string{64: "2001:db8:1:2::", 48: "2001:db8:1::", 60: "2001:db8:1::", 63: "2001:db8:1:2::", 128: "2001:db8:1:2:3:4:5:6"} {
		if got := netip.AddrFrom16(siteOf(ip, bits)); got != netip.MustParseAddr(want) {
			t.Errorf("/%d: %v, want %v", bits, got, want)
		}
	}
	v4 := netip.MustParseAddr("192.0.2.7").As16()
	if siteOf(v4, 64) != v4 {
		t.Error("an IPv4 address was cut")
	}
}
