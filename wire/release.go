package wire

import "encoding/binary"

// RKLen is the size of a period's release secret.
const RKLen = 32

// releasePayloadLen is the fixed RELEASE payload size (PROTOCOL.md §3.3).
const releasePayloadLen = 56

// ReleaseLen is the datagram size of a RELEASE.
const ReleaseLen = HeaderLen + releasePayloadLen

// Release is the RELEASE datagram: the period's release secret, sent at
// releaseAt. It carries no signature: a receiver checks RK against the
// commitment in the ANNOUNCE it already holds.
type Release struct {
	Header
	RK        [RKLen]byte
	ReleaseAt int64  // TAI ns, as in the ANNOUNCE (for kernel-side stamping)
	SentAt    int64  // TAI ns, the edge's clock when it built the send
	EdgeID    uint32 // which edge sent it, for per-edge statistics
}

// Len is the encoded size of r.
func (r *Release) Len() int { return ReleaseLen }

// Encode writes r into b and returns the number of bytes written.
func (r *Release) Encode(b []byte) (int, error) {
	if err := checkEncode(b, &r.Header, releasePayloadLen); err != nil {
		return 0, err
	}
	if r.ReleaseAt < 0 || r.SentAt < 0 {
		return 0, ErrInconsistent
	}
	encodeHeader(b, &r.Header, TypeRelease, releasePayloadLen)
	p := b[HeaderLen:ReleaseLen]
	copy(p[0:32], r.RK[:])
	putTime(p[32:], r.ReleaseAt)
	putTime(p[40:], r.SentAt)
	binary.BigEndian.PutUint32(p[48:], r.EdgeID)
	binary.BigEndian.PutUint32(p[52:], 0)
	return ReleaseLen, nil
}

// Decode parses a RELEASE datagram into r.
func (r *Release) Decode(b []byte) error {
	p, err := decodeHeader(b, TypeRelease, &r.Header)
	if err != nil {
		return err
	}
	if len(p) != releasePayloadLen {
		return ErrLength
	}
	if binary.BigEndian.Uint32(p[52:]) != 0 {
		return ErrReserved
	}
	var ok1, ok2 bool
	copy(r.RK[:], p[0:32])
	r.ReleaseAt, ok1 = getTime(p[32:])
	r.SentAt, ok2 = getTime(p[40:])
	if !ok1 || !ok2 {
		return ErrInconsistent
	}
	r.EdgeID = binary.BigEndian.Uint32(p[48:])
	return nil
}

// SetSentAt overwrites the sentAt field of an encoded RELEASE in place, so
// that an edge can build the datagram before the instant and stamp it with
// one store at send time.
func SetSentAt(b []byte, sentAt int64) error {
	if len(b) != ReleaseLen || sentAt < 0 {
		return ErrInconsistent
	}
	if h, err := Peek(b); err != nil {
		return err
	} else if h.Type != TypeRelease {
		return ErrWrongType
	}
	putTime(b[HeaderLen+40:], sentAt)
	return nil
}
