package wire

import "encoding/binary"

// Protocol constants. See PROTOCOL.md §2.
const (
	// Magic is the first four bytes of every datagram: "EMBG".
	Magic uint32 = 0x454d4247
	// Version is the protocol version this package speaks.
	Version uint8 = 1
	// HeaderLen is the size of the common header.
	HeaderLen = 24
	// MaxDatagram is the largest datagram any decoder accepts (a jumbo
	// frame's UDP payload). Deployments choose a smaller operating limit;
	// DefaultMaxDatagram is the default and fits every path without IP
	// fragmentation.
	MaxDatagram = 9000
	// DefaultMaxDatagram is the default operating limit on datagram size.
	DefaultMaxDatagram = 1200
)

// Type is a message type.
type Type uint8

// Message types. See PROTOCOL.md §3–§5.
const (
	TypeAnnounce   Type = 0x01 // one Reed–Solomon shard of an ANNOUNCE body
	TypeRelease    Type = 0x02 // the period's release secret RK
	TypeHello      Type = 0x10 // unicast: ask for a cookie
	TypeCookie     Type = 0x11 // unicast: the edge's stateless cookie
	TypeSubscribe  Type = 0x12 // unicast: cookie plus the streams wanted
	TypeSubscribed Type = 0x13 // unicast: subscription accepted
	TypeRefused    Type = 0x14 // unicast: refusal with a reason
	TypeLeave      Type = 0x15 // unicast: end a subscription now
	TypeKeepalive  Type = 0x16 // unicast: refresh a subscription (echoed)
	TypeChallenge  Type = 0x17 // unicast: prove you receive at this new address
	TypeResponse   Type = 0x18 // unicast: answer to a CHALLENGE, moves the subscription
)

// Known reports whether t is a message type of this protocol version.
func (t Type) Known() bool {
	switch t {
	case TypeAnnounce, TypeRelease, TypeHello, TypeCookie, TypeSubscribe,
		TypeSubscribed, TypeRefused, TypeLeave, TypeKeepalive, TypeChallenge, TypeResponse:
		return true
	}
	return false
}

func (t Type) String() string {
	switch t {
	case TypeAnnounce:
		return "ANNOUNCE"
	case TypeRelease:
		return "RELEASE"
	case TypeHello:
		return "HELLO"
	case TypeCookie:
		return "COOKIE"
	case TypeSubscribe:
		return "SUBSCRIBE"
	case TypeSubscribed:
		return "SUBSCRIBED"
	case TypeRefused:
		return "REFUSED"
	case TypeLeave:
		return "LEAVE"
	case TypeKeepalive:
		return "KEEPALIVE"
	case TypeChallenge:
		return "CHALLENGE"
	case TypeResponse:
		return "RESPONSE"
	}
	return "UNKNOWN"
}

// Flags. The low byte holds advisory flags, which a receiver that does not
// know them ignores; the high byte holds critical flags, which make a
// receiver that does not know them drop the datagram (ErrFlags).
const (
	// FlagCatchUp marks a retransmission of a period that was already
	// released (catch-up for late joiners); receivers leave it out of
	// arrival-skew statistics.
	FlagCatchUp uint16 = 0x0001

	criticalFlags uint16 = 0xff00
	knownCritical uint16 = 0x0000
	knownFlags    uint16 = FlagCatchUp
)

// Header is the common 24-byte header. Encoders fill Type, Version and
// Length themselves; decoders fill every field.
type Header struct {
	Version uint8
	Type    Type
	Flags   uint16
	Stream  uint32 // stream id; zero in unicast session messages
	Period  uint64 // key-period number, monotonic per stream; zero in session messages
	Length  uint16 // payload bytes after the header
}

// header layout offsets
const (
	offMagic    = 0
	offVersion  = 4
	offType     = 5
	offFlags    = 6
	offStream   = 8
	offPeriod   = 12
	offLength   = 20
	offReserved = 22
)

// Peek is the cheap type probe: it validates the header of b (length,
// magic, version, type, critical flags, reserved, length field) and returns
// it without looking at the payload. A datagram Peek accepts may still be
// refused by its type's decoder.
func Peek(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, ErrTruncated
	}
	if len(b) > MaxDatagram {
		return h, ErrOversized
	}
	if binary.BigEndian.Uint32(b[offMagic:]) != Magic {
		return h, ErrMagic
	}
	h.Version = b[offVersion]
	if h.Version != Version {
		return h, ErrVersion
	}
	h.Type = Type(b[offType])
	if !h.Type.Known() {
		return h, ErrUnknownType
	}
	h.Flags = binary.BigEndian.Uint16(b[offFlags:])
	if h.Flags&criticalFlags&^knownCritical != 0 {
		return h, ErrFlags
	}
	if binary.BigEndian.Uint16(b[offReserved:]) != 0 {
		return h, ErrReserved
	}
	h.Stream = binary.BigEndian.Uint32(b[offStream:])
	h.Period = binary.BigEndian.Uint64(b[offPeriod:])
	h.Length = binary.BigEndian.Uint16(b[offLength:])
	if int(h.Length) != len(b)-HeaderLen {
		return h, ErrLength
	}
	return h, nil
}

// decodeHeader runs Peek and checks the type, returning the payload.
func decodeHeader(b []byte, want Type, h *Header) ([]byte, error) {
	got, err := Peek(b)
	if err != nil {
		return nil, err
	}
	if got.Type != want {
		return nil, ErrWrongType
	}
	*h = got
	return b[HeaderLen:], nil
}

// encodeHeader writes h's header for a payload of n bytes into b, which the
// caller has checked is at least HeaderLen+n long.
func encodeHeader(b []byte, h *Header, t Type, n int) {
	h.Version = Version
	h.Type = t
	h.Length = uint16(n)
	binary.BigEndian.PutUint32(b[offMagic:], Magic)
	b[offVersion] = Version
	b[offType] = byte(t)
	binary.BigEndian.PutUint16(b[offFlags:], h.Flags)
	binary.BigEndian.PutUint32(b[offStream:], h.Stream)
	binary.BigEndian.PutUint64(b[offPeriod:], h.Period)
	binary.BigEndian.PutUint16(b[offLength:], uint16(n))
	binary.BigEndian.PutUint16(b[offReserved:], 0)
}

// checkEncode validates what every encoder must: the total size fits both
// b and MaxDatagram, and only defined flags are sent (PROTOCOL.md §2.2).
func checkEncode(b []byte, h *Header, n int) error {
	if HeaderLen+n > MaxDatagram {
		return ErrOversized
	}
	if len(b) < HeaderLen+n {
		return ErrShortBuffer
	}
	if h.Flags&^knownFlags != 0 {
		return ErrFlags
	}
	return nil
}

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// putTime and getTime carry TAI nanoseconds; negative instants are not
// representable on the wire (getTime's ok is false for them).
func putTime(b []byte, t int64) { binary.BigEndian.PutUint64(b, uint64(t)) }

func getTime(b []byte) (int64, bool) {
	v := binary.BigEndian.Uint64(b)
	return int64(v), v>>63 == 0
}

// AddFlags sets the defined flags f in the header of an encoded datagram,
// in place: how an edge marks a stored RELEASE as a catch-up copy without
// decoding and re-encoding it.
func AddFlags(b []byte, f uint16) error {
	if f&^knownFlags != 0 {
		return ErrFlags
	}
	if _, err := Peek(b); err != nil {
		return err
	}
	binary.BigEndian.PutUint16(b[offFlags:], binary.BigEndian.Uint16(b[offFlags:])|f)
	return nil
}
