package wire

import (
	"encoding/binary"
	"errors"
)

// A browser measures its clock's offset to an edge's with a time echo
// over its session (PROTOCOL.md §4.8): it sends a TimeRequest holding its
// own send instant, and the edge answers a TimeEcho holding that instant
// and its own receive and send instants, NTP-style. They are not embargo
// datagrams: their magic is "EMBT", and no receiver takes them for one.
const (
	// TimeMagic is the first four bytes of a time echo message: "EMBT".
	TimeMagic uint32 = 0x454d4254
	// TimeRequestLen and TimeEchoLen are the messages' sizes.
	TimeRequestLen = 16
	TimeEchoLen    = 32
)

// ErrTimeEcho: not a time echo message of the right length, or its
// reserved bytes are not zero.
var ErrTimeEcho = errors.New("wire: not a time echo message")

// TimeRequest is a browser's: Origin is its send instant on its own
// clock (an edge echoes it unread; embargo's page sends UTC ns).
type TimeRequest struct{ Origin int64 }

// TimeEcho is an edge's answer: the request's Origin, and the edge's
// receive and send instants (TAI ns, its clock's midpoint).
type TimeEcho struct{ Origin, Received, Sent int64 }

func (*TimeRequest) Len() int { return TimeRequestLen }
func (*TimeEcho) Len() int    { return TimeEchoLen }

// Encode writes m into b and returns the number of bytes written.
func (m *TimeRequest) Encode(b []byte) (int, error) {
	if len(b) < TimeRequestLen {
		return 0, ErrShortBuffer
	}
	putTimeHead(b)
	binary.BigEndian.PutUint64(b[8:], uint64(m.Origin))
	return TimeRequestLen, nil
}

// Decode parses a request into m.
func (m *TimeRequest) Decode(b []byte) error {
	if !isTime(b, TimeRequestLen) {
		return ErrTimeEcho
	}
	m.Origin = int64(binary.BigEndian.Uint64(b[8:]))
	return nil
}

// Encode writes m into b and returns the number of bytes written.
func (m *TimeEcho) Encode(b []byte) (int, error) {
	if len(b) < TimeEchoLen {
		return 0, ErrShortBuffer
	}
	putTimeHead(b)
	binary.BigEndian.PutUint64(b[8:], uint64(m.Origin))
	binary.BigEndian.PutUint64(b[16:], uint64(m.Received))
	binary.BigEndian.PutUint64(b[24:], uint64(m.Sent))
	return TimeEchoLen, nil
}

// Decode parses an echo into m.
func (m *TimeEcho) Decode(b []byte) error {
	if !isTime(b, TimeEchoLen) {
		return ErrTimeEcho
	}
	m.Origin = int64(binary.BigEndian.Uint64(b[8:]))
	m.Received = int64(binary.BigEndian.Uint64(b[16:]))
	m.Sent = int64(binary.BigEndian.Uint64(b[24:]))
	return nil
}

// IsTime reports whether b starts with TimeMagic: a time echo message,
// not an embargo datagram.
func IsTime(b []byte) bool {
	return len(b) >= 4 && binary.BigEndian.Uint32(b) == TimeMagic
}

func putTimeHead(b []byte) {
	binary.BigEndian.PutUint32(b, TimeMagic)
	clear(b[4:8])
}

func isTime(b []byte, n int) bool {
	return len(b) == n && IsTime(b) && binary.BigEndian.Uint32(b[4:]) == 0
}
