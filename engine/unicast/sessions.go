package unicast

import (
	"cmp"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var (
	// ErrConfig is wrapped by the reasons a configuration is refused.
	ErrConfig = errors.New("unicast: invalid config")
	// ErrNotSupported is wrapped by NewServer off Linux.
	ErrNotSupported = errors.New("unicast: server not supported on this platform")
)

// Defaults for SessionConfig.
const (
	DefaultMaxSubscribers = 100_000
	// DefaultMaxPerAddress allows a household or an office behind one NAT.
	DefaultMaxPerAddress = 256
	// DefaultKeepalive is below common NAT UDP timeouts (~30 s).
	DefaultKeepalive      = 15 * time.Second
	DefaultExpiry         = 45 * time.Second
	DefaultCookieLifetime = 30 * time.Second
)

// SessionConfig configures Sessions. Streams is required.
type SessionConfig struct {
	Streams        []uint32 // the streams this edge serves
	MaxSubscribers int
	MaxPerAddress  int
	Keepalive      time.Duration // advertised keepalive interval
	Expiry         time.Duration // silence after which a subscription is dropped
	CookieLifetime time.Duration

	// Admission (PROTOCOL.md §4.12). MaxPerPrefix limits the
	// subscriptions of one IPv6 prefix of PrefixBits bits (defaults
	// DefaultMaxPerAddress, DefaultPrefixBits); SubscribeRate and
	// SubscribeBurst the SUBSCRIBEs per second of one IPv4 address or
	// IPv6 prefix.
	MaxPerPrefix                  int
	PrefixBits                    int
	SubscribeRate, SubscribeBurst int
	// Tokens, when set, makes a subscription token (§4.10) signed by one
	// of its keys a condition of every SUBSCRIBE, no longer-lived than
	// TokenMaxLife (default DefaultTokenMaxLife), checked against the
	// TAI time of the instant handled (UTC + TAIOffset; default
	// ptp.DefaultTAIOffset).
	Tokens       *seal.KeyRing
	TokenMaxLife time.Duration
	TAIOffset    ptp.TAIOffset
}

// Sessions is an edge's subscriber table and session protocol, without
// I/O: Handle takes a datagram and its source and says what to answer. It
// is safe for concurrent use.
type Sessions struct {
	cfg    SessionConfig
	jar    *cookieJar
	served map[uint32]bool
	// share is the edge's X25519 key for session keys (PROTOCOL.md §4.8);
	// keys derives a session's MAC key from its id, so that no key is
	// stored per subscriber.
	share *ecdh.PrivateKey
	keys  hash.Hash

	mu       sync.Mutex
	subs     []sub     // slots; a session id names its slot
	free     []uint32  // empty slots
	index    addrIndex // address → slot, and the counts per address and site
	rate     *limiter
	sets     []streamSet // interned stream lists; sub.set indexes them
	setRefs  []int       // subscriptions using each set; 0: the slot is free
	freeSets []uint16
	setIndex map[string]uint16
	gen      atomic.Uint64 // bumped on every change of the subscriber set
	stats    SessionStats
	epoch    time.Time // sub.seen is seconds since epoch (the first instant handled)
}

// addrKey is a subscriber's address and port, compactly: 16 address bytes
// (IPv4 mapped) and the port, big-endian.
type addrKey [18]byte

func keyOf(ap netip.AddrPort) addrKey {
	var k addrKey
	a := ap.Addr().As16()
	copy(k[:16], a[:])
	binary.BigEndian.PutUint16(k[16:], ap.Port())
	return k
}

func (k addrKey) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(k[:16])).Unmap(), binary.BigEndian.Uint16(k[16:]))
}

func (k addrKey) ip() [16]byte { return [16]byte(k[:16]) }

// sub is one subscription slot, kept small (32 bytes): memory per
// subscriber is a budget (PROTOCOL.md's edges hold hundreds of thousands).
type sub struct {
	key      addrKey
	tag      [4]byte // the session id's random half (its other half is the slot); never 0 in a live slot
	set      uint16  // index into Sessions.sets
	seen     uint32  // last sign of life, seconds since Sessions.epoch
	caughtUp uint32  // when catch-up was last granted, the same way
}

// live reports whether the slot holds a subscription.
func (u *sub) live() bool { return u.tag != [4]byte{} }

// id is the session id of the subscription in slot.
func (u *sub) id(slot uint32) [wire.SessionIDLen]byte {
	var id [wire.SessionIDLen]byte
	binary.BigEndian.PutUint32(id[:4], slot)
	copy(id[4:], u.tag[:])
	return id
}

type streamSet []uint32

// SessionStats counts the session protocol's traffic and outcomes.
type SessionStats struct {
	Subscribers               int
	Hellos, Subscribes        uint64
	Keepalives, Leaves        uint64
	Responses                 uint64
	Refused                   map[wire.Reason]uint64
	Expired, Moved, Malformed uint64
	// Forged counts KEEPALIVE, LEAVE and RESPONSE datagrams naming a live
	// session whose MAC failed: dropped unanswered. Challenges counts the
	// CHALLENGEs sent to a new address of a session.
	Forged, Challenges uint64
	// BytesIn and BytesOut are session traffic only, for the amplification
	// account: BytesOut to unvalidated addresses never exceeds BytesIn.
	BytesIn, BytesOut uint64
}

// NewSessions checks cfg and returns an empty table.
func NewSessions(cfg SessionConfig) (*Sessions, error) {
	cfg.MaxSubscribers = cmp.Or(cfg.MaxSubscribers, DefaultMaxSubscribers)
	cfg.MaxPerAddress = cmp.Or(cfg.MaxPerAddress, DefaultMaxPerAddress)
	cfg.Keepalive = cmp.Or(cfg.Keepalive, DefaultKeepalive)
	cfg.Expiry = cmp.Or(cfg.Expiry, DefaultExpiry)
	cfg.CookieLifetime = cmp.Or(cfg.CookieLifetime, DefaultCookieLifetime)
	cfg.MaxPerPrefix = cmp.Or(cfg.MaxPerPrefix, DefaultMaxPerAddress)
	cfg.PrefixBits = cmp.Or(cfg.PrefixBits, DefaultPrefixBits)
	cfg.SubscribeRate = cmp.Or(cfg.SubscribeRate, DefaultSubscribeRate)
	cfg.SubscribeBurst = cmp.Or(cfg.SubscribeBurst, DefaultSubscribeBurst)
	cfg.TokenMaxLife = cmp.Or(cfg.TokenMaxLife, DefaultTokenMaxLife)
	cfg.TAIOffset = cmp.Or(cfg.TAIOffset, ptp.DefaultTAIOffset)
	switch {
	case len(cfg.Streams) == 0 || len(cfg.Streams) > wire.MaxStreams:
		return nil, fmt.Errorf("%w: %d served streams", ErrConfig, len(cfg.Streams))
	case cfg.Keepalive < time.Millisecond || cfg.Expiry < cfg.Keepalive || cfg.Expiry > time.Hour:
		return nil, fmt.Errorf("%w: keepalive %v, expiry %v", ErrConfig, cfg.Keepalive, cfg.Expiry)
	case cfg.CookieLifetime < time.Second:
		return nil, fmt.Errorf("%w: cookie lifetime %v", ErrConfig, cfg.CookieLifetime)
	case cfg.MaxSubscribers < 0 || cfg.MaxPerAddress < 0 || cfg.MaxPerPrefix < 0 || cfg.SubscribeRate < 0 || cfg.SubscribeBurst < 0:
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	case cfg.PrefixBits < 1 || cfg.PrefixBits > 128:
		return nil, fmt.Errorf("%w: IPv6 prefix /%d", ErrConfig, cfg.PrefixBits)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	share, err := seal.NewKeyShare(rand.Reader)
	if err != nil {
		return nil, err
	}
	d := hmac.New(sha256.New, key[:])
	d.Write([]byte("embargo/v1 session-key secret"))
	s := &Sessions{
		cfg: cfg, jar: newCookieJar(key, cfg.CookieLifetime), served: make(map[uint32]bool),
		share: share, keys: hmac.New(sha256.New, d.Sum(nil)),
		index: newAddrIndex(cfg.PrefixBits),
		rate:  newLimiter(cfg.SubscribeRate, cfg.SubscribeBurst), setIndex: make(map[string]uint16),
		stats: SessionStats{Refused: make(map[wire.Reason]uint64)},
	}
	for _, id := range cfg.Streams {
		s.served[id] = true
	}
	return s, nil
}

// Answer is what Handle decided.
type Answer struct {
	// Reply is the datagram to send back to the source, or nil. It is
	// never larger than the datagram that caused it, unless the source is
	// validated (a SUBSCRIBED to a valid cookie).
	Reply []byte
	// Subscribed is set when a subscription was made or renewed: the
	// accepted streams and the catch-up asked for.
	Subscribed bool
	Streams    []uint32
	CatchUp    int
}

// Handle processes one session datagram from from, received at now,
// writing any reply into out (at least wire.MaxDatagram bytes). Cookies
// are minted for and checked against now's window, subscriptions noted
// alive at now.
func (s *Sessions) Handle(pkt []byte, from netip.AddrPort, now time.Time, out []byte) Answer {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	var m wire.Subscribe
	if !from.Addr().IsLinkLocalUnicast() && m.Decode(pkt) == nil {
		return s.handleSubscribe(&m, len(pkt), from, now, out)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.BytesIn += uint64(len(pkt))
	a := s.handle(pkt, from, now, out)
	s.stats.BytesOut += uint64(len(a.Reply))
	return a
}

func (s *Sessions) handle(pkt []byte, from netip.AddrPort, now time.Time, out []byte) Answer {
	// A link-local source needs its zone to be answered, and the fan-out's
	// compact addresses drop it: such subscribers are not served.
	if from.Addr().IsLinkLocalUnicast() {
		s.stats.Malformed++
		return Answer{}
	}
	h, err := wire.Peek(pkt)
	if err != nil || h.Stream != 0 || h.Period != 0 {
		s.stats.Malformed++
		return Answer{}
	}
	switch h.Type {
	case wire.TypeHello:
		var m wire.Hello
		if m.Decode(pkt) != nil {
			break
		}
		s.stats.Hellos++
		c := wire.Cookie{Nonce: m.Nonce, Cookie: s.jar.mint(from, now)}
		return s.reply(&c, out)
	case wire.TypeKeepalive:
		var m wire.Keepalive
		if m.Decode(pkt) != nil || m.Echo {
			break
		}
		s.stats.Keepalives++
		return s.keepalive(&m, pkt, from, now, out)
	case wire.TypeLeave:
		var m wire.Leave
		if m.Decode(pkt) != nil {
			break
		}
		s.stats.Leaves++
		// Authenticated, so from any address: a LEAVE is never answered.
		if slot, ok := s.authentic(m.SessionID, pkt); ok {
			s.remove(slot)
		}
		return Answer{}
	case wire.TypeResponse:
		var m wire.Response
		if m.Decode(pkt) != nil {
			break
		}
		s.stats.Responses++
		return s.response(&m, pkt, from, now, out)
	}
	s.stats.Malformed++
	return Answer{}
}

type encoder interface {
	Encode([]byte) (int, error)
}

func (s *Sessions) reply(m encoder, out []byte) Answer {
	n, err := m.Encode(out)
	if err != nil {
		return Answer{}
	}
	return Answer{Reply: out[:n]}
}

func (s *Sessions) refuse(nonce [wire.NonceLen]byte, why wire.Reason, retry time.Duration, out []byte) Answer {
	s.stats.Refused[why]++
	return s.reply(&wire.Refused{Nonce: nonce, Reason: why, RetryAfterMs: uint32(retry / time.Millisecond)}, out)
}

// handleSubscribe runs a SUBSCRIBE in three steps, so that its costly
// checks run outside the table's lock: the cookie and the site's rate
// under the lock; then the token (an Ed25519 verification) and the key
// share (an X25519), which need no lock; then the table, under the lock.
func (s *Sessions) handleSubscribe(m *wire.Subscribe, n int, from netip.AddrPort, now time.Time, out []byte) Answer {
	s.mu.Lock()
	s.stats.BytesIn += uint64(n)
	s.stats.Subscribes++
	a, ok := s.proven(m, from, now, out)
	if !ok {
		s.stats.BytesOut += uint64(len(a.Reply))
		s.mu.Unlock()
		return a
	}
	s.mu.Unlock()
	tokenOK := s.checkToken(m.Token, now)
	var mask [wire.SessionKeyLen]byte
	var err error
	if tokenOK {
		mask, err = seal.SessionKeyMask(s.share, &m.KeyShare, &m.Nonce)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !tokenOK:
		a = s.refuse(m.Nonce, wire.ReasonToken, 0, out)
	case err != nil: // a key share of small order
		s.stats.Malformed++
		a = Answer{}
	default:
		a = s.subscribe(m, from, now, &mask, out)
	}
	s.stats.BytesOut += uint64(len(a.Reply))
	return a
}

// proven checks a SUBSCRIBE's cookie and spends a token of its site's
// rate, or returns the refusal. s.mu is held.
func (s *Sessions) proven(m *wire.Subscribe, from netip.AddrPort, now time.Time, out []byte) (Answer, bool) {
	if !s.jar.valid(&m.Cookie, from, now) {
		return s.refuse(m.Nonce, wire.ReasonBadCookie, 0, out), false
	}
	// The address is proven: from here on the work costs the edge (an
	// X25519, perhaps an Ed25519 check), so it is rationed per site.
	if ok, wait := s.rate.take(siteOf(keyOf(from).ip(), s.cfg.PrefixBits), now); !ok {
		return s.refuse(m.Nonce, wire.ReasonBusy, wait, out), false
	}
	return Answer{}, true
}

// subscribe makes or renews the subscription of a proven SUBSCRIBE whose
// token passed, with the mask of its session key. s.mu is held.
func (s *Sessions) subscribe(m *wire.Subscribe, from netip.AddrPort, now time.Time, mask *[wire.SessionKeyLen]byte, out []byte) Answer {
	key := keyOf(from)
	var accepted streamSet
	for _, id := range m.Streams {
		if s.served[id] && !slices.Contains(accepted, id) {
			accepted = append(accepted, id)
		}
	}
	if len(accepted) == 0 {
		return s.refuse(m.Nonce, wire.ReasonUnknownStream, 0, out)
	}
	slices.Sort(accepted)
	slot, renew := s.index.find(s.subs, key)
	if !renew {
		if why := s.admit(key); why != 0 {
			return s.refuse(m.Nonce, why, s.cfg.Keepalive, out)
		}
	}
	set, ok := s.intern(accepted)
	if !ok {
		return s.refuse(m.Nonce, wire.ReasonEdgeFull, s.cfg.Keepalive, out)
	}
	nu := sub{key: key, seen: s.seconds(now), set: set}
	for !nu.live() {
		if _, err := rand.Read(nu.tag[:]); err != nil {
			s.release(set)
			return Answer{}
		}
	}
	catchUp := int(min(m.CatchUp, wire.MaxCatchUp))
	if renew {
		old := s.subs[slot]
		s.release(old.set)
		// A renewal of the same streams changes no destination, and its
		// catch-up is limited to one a second: renewals cost the client a
		// datagram and must not cost the edge a plan rebuild or a replay
		// each.
		if old.set != set {
			s.gen.Add(1)
		}
		nu.caughtUp = old.caughtUp
		if nu.seen == old.caughtUp {
			catchUp = 0
		}
	}
	if catchUp > 0 {
		nu.caughtUp = nu.seen
	}
	if !renew {
		slot = s.alloc()
		s.subs[slot] = nu
		s.index.insert(s.subs, slot)
		s.gen.Add(1)
	}
	s.subs[slot] = nu
	id := nu.id(slot)
	skey := s.sessionKey(&id)
	sealed := seal.XorKey(&skey, mask)
	a := s.reply(&wire.Subscribed{
		Nonce: m.Nonce, SessionID: id,
		KeepaliveMs: uint32(s.cfg.Keepalive / time.Millisecond), ExpiryMs: uint32(s.cfg.Expiry / time.Millisecond),
		KeyShare: [wire.KeyShareLen]byte(s.share.PublicKey().Bytes()), SealedKey: sealed,
		Streams: accepted,
	}, out)
	a.Subscribed, a.Streams, a.CatchUp = true, accepted, catchUp
	return a
}

// alloc returns a free slot.
func (s *Sessions) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	s.subs = append(s.subs, sub{})
	return uint32(len(s.subs) - 1)
}

// sessionKey is the MAC key of session id: HMAC-SHA256(the edge's
// session-key secret, id), first 16 bytes. s.mu is held.
func (s *Sessions) sessionKey(id *[wire.SessionIDLen]byte) [wire.SessionKeyLen]byte {
	s.keys.Reset()
	s.keys.Write(id[:])
	var sum [sha256.Size]byte
	return [wire.SessionKeyLen]byte(s.keys.Sum(sum[:0]))
}

// live returns the slot of session id if it is live.
func (s *Sessions) live(id [wire.SessionIDLen]byte) (uint32, bool) {
	slot := binary.BigEndian.Uint32(id[:4])
	return slot, int(slot) < len(s.subs) && s.subs[slot].live() && s.subs[slot].tag == [4]byte(id[4:])
}

// authentic returns the slot of the live session that pkt names, if pkt's
// MAC verifies under its key; a MAC that fails is counted as forged.
func (s *Sessions) authentic(id [wire.SessionIDLen]byte, pkt []byte) (uint32, bool) {
	slot, ok := s.live(id)
	if !ok {
		return 0, false
	}
	key := s.sessionKey(&id)
	if !seal.VerifySession(&key, pkt) {
		s.stats.Forged++
		return 0, false
	}
	return slot, true
}

// keepalive refreshes the session at its own address and echoes; from
// another address it only challenges that address (PROTOCOL.md §4.9): a
// KEEPALIVE never moves or ends a subscription.
func (s *Sessions) keepalive(m *wire.Keepalive, pkt []byte, from netip.AddrPort, now time.Time, out []byte) Answer {
	if _, ok := s.live(m.SessionID); !ok {
		// The edge restarted or dropped the session: the receiver learns
		// it from a REFUSED that echoes its MAC, which no one who did not
		// see the KEEPALIVE can forge.
		return s.refuse([wire.NonceLen]byte(m.MAC[:]), wire.ReasonUnknownSession, 0, out)
	}
	slot, ok := s.authentic(m.SessionID, pkt)
	if !ok {
		return Answer{}
	}
	cur := &s.subs[slot]
	if cur.key != keyOf(from) {
		s.stats.Challenges++
		return s.reply(&wire.Challenge{SessionID: m.SessionID, Cookie: s.jar.mint(from, now)}, out)
	}
	cur.seen = s.seconds(now)
	return s.echo(m.SessionID, m.Seq, out)
}

// echo is the edge's KEEPALIVE to a session, signed with its key.
func (s *Sessions) echo(id [wire.SessionIDLen]byte, seq uint32, out []byte) Answer {
	a := s.reply(&wire.Keepalive{SessionID: id, Seq: seq, Echo: true}, out)
	if a.Reply != nil {
		key := s.sessionKey(&id)
		seal.SignSession(&key, a.Reply)
	}
	return a
}

// response moves a session to from once from proved it receives there
// (the cookie of a CHALLENGE) and holds the session key (the MAC).
func (s *Sessions) response(m *wire.Response, pkt []byte, from netip.AddrPort, now time.Time, out []byte) Answer {
	if !s.jar.valid(&m.Cookie, from, now) {
		s.stats.Refused[wire.ReasonBadCookie]++
		return Answer{}
	}
	slot, ok := s.authentic(m.SessionID, pkt)
	if !ok {
		return Answer{}
	}
	key := keyOf(from)
	if cur := &s.subs[slot]; cur.key != key {
		other, taken := s.index.find(s.subs, key)
		if why := s.admit(key); !taken && why != 0 {
			return s.refuse([wire.NonceLen]byte(m.MAC[:]), why, s.cfg.Keepalive, out)
		}
		if taken {
			// One subscription per address and port: the proven session
			// replaces whatever held the new address.
			s.remove(other)
		}
		s.index.remove(s.subs, slot)
		cur.key = key
		s.index.insert(s.subs, slot)
		s.gen.Add(1)
		s.stats.Moved++
	}
	s.subs[slot].seen = s.seconds(now)
	return s.echo(m.SessionID, m.Seq, out)
}

func (s *Sessions) remove(slot uint32) {
	cur := &s.subs[slot]
	s.release(cur.set)
	s.index.remove(s.subs, slot)
	*cur = sub{}
	s.free = append(s.free, slot)
	s.gen.Add(1)
}

// intern returns the index of the stream list, adding it if new, and
// counts one more subscription using it. Sets no subscription uses are
// freed, so a client re-subscribing with ever new stream combinations
// cannot fill the table.
func (s *Sessions) intern(set streamSet) (uint16, bool) {
	var buf [4 * wire.MaxStreams]byte
	kb := setKey(buf[:0], set)
	if i, ok := s.setIndex[string(kb)]; ok {
		s.setRefs[i]++
		return i, true
	}
	var i uint16
	switch {
	case len(s.freeSets) > 0:
		i = s.freeSets[len(s.freeSets)-1]
		s.freeSets = s.freeSets[:len(s.freeSets)-1]
		s.sets[i] = set
	case len(s.sets) <= 1<<16-1:
		s.sets = append(s.sets, set)
		s.setRefs = append(s.setRefs, 0)
		i = uint16(len(s.sets) - 1)
	default:
		return 0, false
	}
	s.setRefs[i] = 1
	s.setIndex[string(kb)] = i
	return i, true
}

// setKey is set's index key: its ids, big-endian, appended to b.
func setKey(b []byte, set streamSet) []byte {
	for _, id := range set {
		b = binary.BigEndian.AppendUint32(b, id)
	}
	return b
}

// release drops one use of set i, freeing it when unused.
func (s *Sessions) release(i uint16) {
	if s.setRefs[i]--; s.setRefs[i] > 0 {
		return
	}
	var buf [4 * wire.MaxStreams]byte
	delete(s.setIndex, string(setKey(buf[:0], s.sets[i])))
	s.sets[i] = nil
	s.freeSets = append(s.freeSets, i)
}

func (s *Sessions) seconds(now time.Time) uint32 {
	if s.epoch.IsZero() {
		s.epoch = now
	}
	return uint32(max(now.Sub(s.epoch), 0) / time.Second)
}

// Expire drops the subscriptions silent at now for longer than the expiry
// (counted in whole seconds, so up to a second more) and returns how many.
func (s *Sessions) Expire(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.seconds(now)
	s.rate.prune(now)
	exp := uint32((s.cfg.Expiry + time.Second - 1) / time.Second)
	n := 0
	for i := range s.subs {
		if s.subs[i].live() && s.subs[i].seen+exp < limit {
			s.remove(uint32(i))
			n++
		}
	}
	s.stats.Expired += uint64(n)
	return n
}

// Destinations appends to dst the subscribers of stream and returns it,
// with the generation of the subscriber set it reflects.
func (s *Sessions) Destinations(dst []netip.AddrPort, stream uint32) ([]netip.AddrPort, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make([]bool, len(s.sets))
	for i, set := range s.sets {
		want[i] = slices.Contains(set, stream)
	}
	for i := range s.subs {
		if cur := &s.subs[i]; cur.live() && want[cur.set] {
			dst = append(dst, cur.key.addrPort())
		}
	}
	return dst, s.gen.Load()
}

// Each calls size with the number of subscribers of stream, then add
// with each of them, under the table's lock (neither may call back into
// s), and returns the generation of the subscriber set it reflects. It
// copies nothing: the fan-out builds its plans with it, sized once.
func (s *Sessions) Each(stream uint32, size func(int), add func(netip.AddrPort)) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf [64]bool
	want := buf[:0]
	n := 0
	for i, set := range s.sets {
		want = append(want, slices.Contains(set, stream))
		if want[i] {
			n += s.setRefs[i]
		}
	}
	size(n)
	for i := range s.subs {
		if cur := &s.subs[i]; cur.live() && want[cur.set] {
			add(cur.key.addrPort())
		}
	}
	return s.gen.Load()
}

// Generation changes whenever a subscription is made, moved or dropped.
// It takes no lock: the fan-out asks before every datagram it sends.
func (s *Sessions) Generation() uint64 { return s.gen.Load() }

// Stats returns a snapshot of the counters.
func (s *Sessions) Stats() SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Subscribers = s.index.len()
	st.Refused = maps.Clone(s.stats.Refused)
	return st
}
