package wire

import "encoding/binary"

// Unicast session limits and sizes. See PROTOCOL.md §4.
const (
	// NonceLen is the size of a client's request nonce.
	NonceLen = 8
	// CookieLen is the size of an edge's stateless cookie.
	CookieLen = 24
	// SessionIDLen is the size of a subscription's session id.
	SessionIDLen = 8
	// MaxStreams is the most streams one SUBSCRIBE may name.
	MaxStreams = 64
	// MaxCatchUp is the most released periods per stream a SUBSCRIBE may
	// ask to be replayed. With MaxAnnounceLead it sizes the receivers'
	// assembly window (PROTOCOL.md §7.3).
	MaxCatchUp = 16
	// MaxAnnounceLead is how many periods ahead of the current one an
	// origin may announce.
	MaxAnnounceLead = 8
	// HelloMinLen is the smallest HELLO datagram: padded so that the COOKIE
	// (CookieMsgLen) or REFUSED an edge answers with is never larger.
	HelloMinLen = 64
	// CookieMsgLen is the datagram size of a COOKIE.
	CookieMsgLen = HeaderLen + NonceLen + CookieLen
	// RefusedLen is the datagram size of a REFUSED.
	RefusedLen = HeaderLen + 16
	// KeyShareLen is the size of an X25519 public key: the receiver's and
	// the edge's key shares in SUBSCRIBE and SUBSCRIBED.
	KeyShareLen = 32
	// SessionKeyLen is the size of a session's MAC key (PROTOCOL.md §4.8).
	SessionKeyLen = 16
	// MACLen is the size of the MAC that ends KEEPALIVE, LEAVE and RESPONSE.
	MACLen = 16
	// MaxTokenLen is the largest subscription token a SUBSCRIBE may carry.
	MaxTokenLen = 512
	// SubscribeMinLen is the smallest SUBSCRIBE: one stream, no token.
	SubscribeMinLen = HeaderLen + subscribeFixed + 4
	// LeaveLen is the datagram size of a LEAVE.
	LeaveLen = HeaderLen + 32
	// KeepaliveLen is the datagram size of a KEEPALIVE and of its echo.
	KeepaliveLen = HeaderLen + 32
	// ChallengeLen is the datagram size of a CHALLENGE: never larger than
	// the KEEPALIVE that causes it.
	ChallengeLen = HeaderLen + SessionIDLen + CookieLen
	// ResponseLen is the datagram size of a RESPONSE.
	ResponseLen = HeaderLen + 56
)

// Reason is why an edge refused a request.
type Reason uint16

// Refusal reasons. A client that gets ReasonBadCookie sends a new HELLO.
const (
	ReasonBadCookie      Reason = 1 // cookie invalid or expired: HELLO again
	ReasonUnknownStream  Reason = 2 // none of the streams asked for is served here
	ReasonEdgeFull       Reason = 3 // the edge's subscriber limit is reached
	ReasonAddressLimit   Reason = 4 // too many subscriptions from this address
	ReasonShuttingDown   Reason = 5 // the edge is stopping: try another
	ReasonUnknownSession Reason = 6 // KEEPALIVE for no live session: SUBSCRIBE again
	ReasonToken          Reason = 7 // subscription token missing, invalid or expired
	ReasonBusy           Reason = 8 // too many requests from this address: wait
)

func (r Reason) String() string {
	switch r {
	case ReasonBadCookie:
		return "bad-cookie"
	case ReasonUnknownStream:
		return "unknown-stream"
	case ReasonEdgeFull:
		return "edge-full"
	case ReasonAddressLimit:
		return "address-limit"
	case ReasonShuttingDown:
		return "shutting-down"
	case ReasonUnknownSession:
		return "unknown-session"
	case ReasonToken:
		return "token"
	case ReasonBusy:
		return "busy"
	}
	return "unknown"
}

// decodeSession decodes a session message header: stream and period must
// be zero.
func decodeSession(b []byte, t Type, h *Header) ([]byte, error) {
	p, err := decodeHeader(b, t, h)
	if err != nil {
		return nil, err
	}
	if h.Stream != 0 || h.Period != 0 {
		return nil, ErrInconsistent
	}
	return p, nil
}

// encodeSession checks and writes a session message header for an n-byte
// payload.
func encodeSession(b []byte, h *Header, t Type, n int) error {
	if err := checkEncode(b, h, n); err != nil {
		return err
	}
	if h.Stream != 0 || h.Period != 0 {
		return ErrInconsistent
	}
	encodeHeader(b, h, t, n)
	return nil
}

// Hello asks an edge for a cookie. It is padded with zeros to at least
// HelloMinLen so that no answer to it is larger than it.
type Hello struct {
	Header
	Nonce  [NonceLen]byte
	PadLen int // zero bytes after the nonce; HeaderLen+NonceLen+PadLen ≥ HelloMinLen
}

// Len is the encoded size of m.
func (m *Hello) Len() int { return HeaderLen + NonceLen + m.PadLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Hello) Encode(b []byte) (int, error) {
	n := NonceLen + m.PadLen
	if m.PadLen < 0 || HeaderLen+n < HelloMinLen {
		return 0, ErrLength
	}
	if err := encodeSession(b, &m.Header, TypeHello, n); err != nil {
		return 0, err
	}
	copy(b[HeaderLen:], m.Nonce[:])
	clear(b[HeaderLen+NonceLen : HeaderLen+n])
	return HeaderLen + n, nil
}

// Decode parses a HELLO into m.
func (m *Hello) Decode(b []byte) error {
	p, err := decodeSession(b, TypeHello, &m.Header)
	if err != nil {
		return err
	}
	if len(b) < HelloMinLen {
		return ErrTruncated
	}
	if !allZero(p[NonceLen:]) {
		return ErrReserved
	}
	copy(m.Nonce[:], p)
	m.PadLen = len(p) - NonceLen
	return nil
}

// Cookie is an edge's answer to a HELLO: an opaque, stateless token bound to
// the client's address, which the client returns in SUBSCRIBE.
type Cookie struct {
	Header
	Nonce  [NonceLen]byte // echoed from the HELLO
	Cookie [CookieLen]byte
}

// Len is the encoded size of m.
func (m *Cookie) Len() int { return CookieMsgLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Cookie) Encode(b []byte) (int, error) {
	if err := encodeSession(b, &m.Header, TypeCookie, NonceLen+CookieLen); err != nil {
		return 0, err
	}
	copy(b[HeaderLen:], m.Nonce[:])
	copy(b[HeaderLen+NonceLen:], m.Cookie[:])
	return CookieMsgLen, nil
}

// Decode parses a COOKIE into m.
func (m *Cookie) Decode(b []byte) error {
	p, err := decodeSession(b, TypeCookie, &m.Header)
	if err != nil {
		return err
	}
	if len(p) != NonceLen+CookieLen {
		return ErrLength
	}
	copy(m.Nonce[:], p)
	copy(m.Cookie[:], p[NonceLen:])
	return nil
}

// putStreams writes a count-prefixed stream list; getStreams reads one into
// dst[:0], reusing its capacity so that a reused value decodes without
// allocating.
func putStreams(p []byte, streams []uint32) {
	for i, s := range streams {
		binary.BigEndian.PutUint32(p[4*i:], s)
	}
}

func getStreams(dst []uint32, p []byte, n int) ([]uint32, error) {
	if n < 1 || n > MaxStreams {
		return dst[:0], ErrInconsistent
	}
	if len(p) != 4*n {
		return dst[:0], ErrLength
	}
	dst = dst[:0]
	for i := range n {
		dst = append(dst, binary.BigEndian.Uint32(p[4*i:]))
	}
	return dst, nil
}

// Subscribe asks for the given streams, proving with the cookie that the
// client receives at its address, and offers its key share for the
// session key (PROTOCOL.md §4.3, §4.8).
type Subscribe struct {
	Header
	Nonce    [NonceLen]byte
	Cookie   [CookieLen]byte
	CatchUp  uint8 // how many already-released periods per stream to replay
	KeyShare [KeyShareLen]byte
	Streams  []uint32 // 1..MaxStreams stream ids
	Token    []byte   // subscription token, 0..MaxTokenLen bytes; aliases the input after Decode
}

const subscribeFixed = NonceLen + CookieLen + 4 + KeyShareLen

// Len is the encoded size of m.
func (m *Subscribe) Len() int { return HeaderLen + subscribeFixed + 4*len(m.Streams) + len(m.Token) }

// Encode writes m into b and returns the number of bytes written.
func (m *Subscribe) Encode(b []byte) (int, error) {
	if len(m.Streams) < 1 || len(m.Streams) > MaxStreams || m.CatchUp > MaxCatchUp || len(m.Token) > MaxTokenLen {
		return 0, ErrInconsistent
	}
	n := subscribeFixed + 4*len(m.Streams) + len(m.Token)
	if err := encodeSession(b, &m.Header, TypeSubscribe, n); err != nil {
		return 0, err
	}
	p := b[HeaderLen:]
	copy(p, m.Nonce[:])
	copy(p[8:], m.Cookie[:])
	p[32] = uint8(len(m.Streams))
	p[33] = m.CatchUp
	binary.BigEndian.PutUint16(p[34:], uint16(len(m.Token)))
	copy(p[36:], m.KeyShare[:])
	putStreams(p[subscribeFixed:], m.Streams)
	copy(p[subscribeFixed+4*len(m.Streams):], m.Token)
	return HeaderLen + n, nil
}

// Decode parses a SUBSCRIBE into m, reusing m.Streams' capacity.
func (m *Subscribe) Decode(b []byte) error {
	p, err := decodeSession(b, TypeSubscribe, &m.Header)
	if err != nil {
		return err
	}
	if len(p) < subscribeFixed {
		return ErrTruncated
	}
	copy(m.Nonce[:], p)
	copy(m.Cookie[:], p[8:])
	m.CatchUp = p[33]
	if m.CatchUp > MaxCatchUp {
		return ErrInconsistent
	}
	tl := int(binary.BigEndian.Uint16(p[34:]))
	if tl > MaxTokenLen {
		return ErrInconsistent
	}
	copy(m.KeyShare[:], p[36:])
	end := len(p) - tl
	if end < subscribeFixed {
		return ErrLength
	}
	m.Streams, err = getStreams(m.Streams, p[subscribeFixed:end], int(p[32]))
	m.Token = nil
	if tl > 0 {
		m.Token = p[end:]
	}
	return err
}

// Subscribed accepts a subscription. The client refreshes it with a
// KEEPALIVE every KeepaliveMs; without one for ExpiryMs the edge drops it.
// KeyShare and SealedKey give the client the session key (§4.8).
type Subscribed struct {
	Header
	Nonce       [NonceLen]byte // echoed from the SUBSCRIBE
	SessionID   [SessionIDLen]byte
	KeepaliveMs uint32
	ExpiryMs    uint32
	KeyShare    [KeyShareLen]byte   // the edge's X25519 public key
	SealedKey   [SessionKeyLen]byte // the session key, masked (§4.8)
	Streams     []uint32            // the streams accepted
}

const subscribedFixed = NonceLen + SessionIDLen + 12 + KeyShareLen + SessionKeyLen

// Len is the encoded size of m.
func (m *Subscribed) Len() int { return HeaderLen + subscribedFixed + 4*len(m.Streams) }

// Encode writes m into b and returns the number of bytes written.
func (m *Subscribed) Encode(b []byte) (int, error) {
	if len(m.Streams) < 1 || len(m.Streams) > MaxStreams || m.KeepaliveMs == 0 || m.ExpiryMs < m.KeepaliveMs {
		return 0, ErrInconsistent
	}
	n := subscribedFixed + 4*len(m.Streams)
	if err := encodeSession(b, &m.Header, TypeSubscribed, n); err != nil {
		return 0, err
	}
	p := b[HeaderLen:]
	copy(p, m.Nonce[:])
	copy(p[8:], m.SessionID[:])
	binary.BigEndian.PutUint32(p[16:], m.KeepaliveMs)
	binary.BigEndian.PutUint32(p[20:], m.ExpiryMs)
	p[24] = uint8(len(m.Streams))
	p[25], p[26], p[27] = 0, 0, 0
	copy(p[28:], m.KeyShare[:])
	copy(p[60:], m.SealedKey[:])
	putStreams(p[subscribedFixed:], m.Streams)
	return HeaderLen + n, nil
}

// Decode parses a SUBSCRIBED into m, reusing m.Streams' capacity.
func (m *Subscribed) Decode(b []byte) error {
	p, err := decodeSession(b, TypeSubscribed, &m.Header)
	if err != nil {
		return err
	}
	if len(p) < subscribedFixed {
		return ErrTruncated
	}
	if !allZero(p[25:28]) {
		return ErrReserved
	}
	copy(m.Nonce[:], p)
	copy(m.SessionID[:], p[8:])
	m.KeepaliveMs = binary.BigEndian.Uint32(p[16:])
	m.ExpiryMs = binary.BigEndian.Uint32(p[20:])
	if m.KeepaliveMs == 0 || m.ExpiryMs < m.KeepaliveMs {
		return ErrInconsistent
	}
	copy(m.KeyShare[:], p[28:])
	copy(m.SealedKey[:], p[60:])
	m.Streams, err = getStreams(m.Streams, p[subscribedFixed:], int(p[24]))
	return err
}

// Refused declines a HELLO, SUBSCRIBE or KEEPALIVE. It is never larger than
// the smallest request it answers.
type Refused struct {
	Header
	Nonce        [NonceLen]byte // the request's nonce, or the first 8 bytes of its MAC (§4.5)
	Reason       Reason
	RetryAfterMs uint32 // 0: no advice
}

// Len is the encoded size of m.
func (m *Refused) Len() int { return RefusedLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Refused) Encode(b []byte) (int, error) {
	if err := encodeSession(b, &m.Header, TypeRefused, RefusedLen-HeaderLen); err != nil {
		return 0, err
	}
	p := b[HeaderLen:RefusedLen]
	copy(p, m.Nonce[:])
	binary.BigEndian.PutUint16(p[8:], uint16(m.Reason))
	binary.BigEndian.PutUint16(p[10:], 0)
	binary.BigEndian.PutUint32(p[12:], m.RetryAfterMs)
	return RefusedLen, nil
}

// Decode parses a REFUSED into m. Unknown reasons are kept: a client treats
// them as a refusal without advice.
func (m *Refused) Decode(b []byte) error {
	p, err := decodeSession(b, TypeRefused, &m.Header)
	if err != nil {
		return err
	}
	if len(p) != RefusedLen-HeaderLen {
		return ErrLength
	}
	if binary.BigEndian.Uint16(p[10:]) != 0 {
		return ErrReserved
	}
	copy(m.Nonce[:], p)
	m.Reason = Reason(binary.BigEndian.Uint16(p[8:]))
	m.RetryAfterMs = binary.BigEndian.Uint32(p[12:])
	return nil
}

// putSessionAuth writes the tail that KEEPALIVE and LEAVE share: session id,
// sequence, direction (KEEPALIVE only), reserved, MAC.
func putSessionAuth(p []byte, id *[SessionIDLen]byte, seq uint32, dir byte, mac *[MACLen]byte) {
	copy(p, id[:])
	binary.BigEndian.PutUint32(p[8:], seq)
	p[12], p[13], p[14], p[15] = dir, 0, 0, 0
	copy(p[16:], mac[:])
}

func getSessionAuth(p []byte, id *[SessionIDLen]byte, seq *uint32, mac *[MACLen]byte) (dir byte, err error) {
	if len(p) != 32 {
		return 0, ErrLength
	}
	if !allZero(p[13:16]) {
		return 0, ErrReserved
	}
	copy(id[:], p)
	*seq = binary.BigEndian.Uint32(p[8:])
	copy(mac[:], p[16:])
	return p[12], nil
}

// Leave ends a subscription at once. MAC authenticates it with the
// session key (§4.8); a LEAVE that fails it is dropped.
type Leave struct {
	Header
	SessionID [SessionIDLen]byte
	Seq       uint32
	MAC       [MACLen]byte
}

// Len is the encoded size of m.
func (m *Leave) Len() int { return LeaveLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Leave) Encode(b []byte) (int, error) {
	if err := encodeSession(b, &m.Header, TypeLeave, LeaveLen-HeaderLen); err != nil {
		return 0, err
	}
	putSessionAuth(b[HeaderLen:], &m.SessionID, m.Seq, 0, &m.MAC)
	return LeaveLen, nil
}

// Decode parses a LEAVE into m.
func (m *Leave) Decode(b []byte) error {
	p, err := decodeSession(b, TypeLeave, &m.Header)
	if err != nil {
		return err
	}
	dir, err := getSessionAuth(p, &m.SessionID, &m.Seq, &m.MAC)
	if err == nil && dir != 0 {
		return ErrReserved
	}
	return err
}

// Keepalive refreshes a subscription; the edge echoes it (same size, Echo
// set, its own MAC) so the client learns the edge is alive, and NAT
// bindings stay open both ways. MAC authenticates it with the session key
// (§4.8).
type Keepalive struct {
	Header
	SessionID [SessionIDLen]byte
	Seq       uint32
	Echo      bool // set by the edge in its answer
	MAC       [MACLen]byte
}

// Len is the encoded size of m.
func (m *Keepalive) Len() int { return KeepaliveLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Keepalive) Encode(b []byte) (int, error) {
	if err := encodeSession(b, &m.Header, TypeKeepalive, KeepaliveLen-HeaderLen); err != nil {
		return 0, err
	}
	var dir byte
	if m.Echo {
		dir = 1
	}
	putSessionAuth(b[HeaderLen:], &m.SessionID, m.Seq, dir, &m.MAC)
	return KeepaliveLen, nil
}

// Decode parses a KEEPALIVE into m.
func (m *Keepalive) Decode(b []byte) error {
	p, err := decodeSession(b, TypeKeepalive, &m.Header)
	if err != nil {
		return err
	}
	dir, err := getSessionAuth(p, &m.SessionID, &m.Seq, &m.MAC)
	if err != nil {
		return err
	}
	if dir > 1 {
		return ErrInconsistent
	}
	m.Echo = dir == 1
	return nil
}

// Challenge asks whoever sent an authenticated KEEPALIVE from an address
// other than its subscription's to prove it receives there: it carries a
// cookie for that address, which the RESPONSE returns (§4.9).
type Challenge struct {
	Header
	SessionID [SessionIDLen]byte
	Cookie    [CookieLen]byte
}

// Len is the encoded size of m.
func (m *Challenge) Len() int { return ChallengeLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Challenge) Encode(b []byte) (int, error) {
	if err := encodeSession(b, &m.Header, TypeChallenge, ChallengeLen-HeaderLen); err != nil {
		return 0, err
	}
	copy(b[HeaderLen:], m.SessionID[:])
	copy(b[HeaderLen+SessionIDLen:], m.Cookie[:])
	return ChallengeLen, nil
}

// Decode parses a CHALLENGE into m.
func (m *Challenge) Decode(b []byte) error {
	p, err := decodeSession(b, TypeChallenge, &m.Header)
	if err != nil {
		return err
	}
	if len(p) != ChallengeLen-HeaderLen {
		return ErrLength
	}
	copy(m.SessionID[:], p)
	copy(m.Cookie[:], p[SessionIDLen:])
	return nil
}

// Response answers a CHALLENGE: the cookie proves the sender receives at
// its address, the MAC that it holds the session key. The edge then moves
// the subscription to that address (§4.9).
type Response struct {
	Header
	SessionID [SessionIDLen]byte
	Seq       uint32
	Cookie    [CookieLen]byte
	MAC       [MACLen]byte
}

// Len is the encoded size of m.
func (m *Response) Len() int { return ResponseLen }

// Encode writes m into b and returns the number of bytes written.
func (m *Response) Encode(b []byte) (int, error) {
	if err := encodeSession(b, &m.Header, TypeResponse, ResponseLen-HeaderLen); err != nil {
		return 0, err
	}
	p := b[HeaderLen:ResponseLen]
	copy(p, m.SessionID[:])
	binary.BigEndian.PutUint32(p[8:], m.Seq)
	binary.BigEndian.PutUint32(p[12:], 0)
	copy(p[16:], m.Cookie[:])
	copy(p[40:], m.MAC[:])
	return ResponseLen, nil
}

// Decode parses a RESPONSE into m.
func (m *Response) Decode(b []byte) error {
	p, err := decodeSession(b, TypeResponse, &m.Header)
	if err != nil {
		return err
	}
	if len(p) != ResponseLen-HeaderLen {
		return ErrLength
	}
	if binary.BigEndian.Uint32(p[12:]) != 0 {
		return ErrReserved
	}
	copy(m.SessionID[:], p)
	m.Seq = binary.BigEndian.Uint32(p[8:])
	copy(m.Cookie[:], p[16:])
	copy(m.MAC[:], p[40:])
	return nil
}
