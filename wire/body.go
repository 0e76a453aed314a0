package wire

import "encoding/binary"

// PayloadType says what an ANNOUNCE body's sealed payload holds.
type PayloadType uint8

// Payload types. See PROTOCOL.md §3.2.
const (
	PayloadContentKeys PayloadType = 1 // a ContentKeys list
	PayloadOpaque      PayloadType = 2 // any resource, delivered as is
)

// ANNOUNCE body sizes. See PROTOCOL.md §3.2.
const (
	// BodyVersion is the ANNOUNCE body layout version.
	BodyVersion uint8 = 1
	// BodyFixedLen is the size of the body before the sealed payload; these
	// bytes are the AEAD's associated data.
	BodyFixedLen = 92
	// SaltLen is the size of the commitment salt.
	SaltLen = 16
	// TagLen is the AEAD tag size (AES-256-GCM).
	TagLen = 16
	// MinBodyLen is the smallest valid body: an empty payload's tag and the
	// signature.
	MinBodyLen = BodyFixedLen + TagLen + SigLen
)

// Body is the ANNOUNCE body that a period's shards rebuild to: the payload
// sealed under the period's release secret RK, a commitment to RK, the
// period's instants, and the origin's signature over all of it.
type Body struct {
	PayloadType PayloadType
	Stream      uint32
	Period      uint64
	ReleaseAt   int64 // TAI ns: the edge releases RK at this instant
	PresentAt   int64 // TAI ns: players present the period's media at this instant
	KeyID       [KeyIDLen]byte
	Salt        [SaltLen]byte
	Commitment  [HashLen]byte
	Sealed      []byte // AEAD ciphertext and tag
	Sig         [SigLen]byte
}

// Len is the encoded size of b.
func (b *Body) Len() int { return BodyFixedLen + len(b.Sealed) + SigLen }

// Encode writes b into dst and returns the number of bytes written. A
// builder may encode with a zero Sealed of the right length and a zero Sig,
// then seal and sign in place (see BodyAAD, BodySigned).
func (b *Body) Encode(dst []byte) (int, error) {
	n := b.Len()
	if n > MaxBody {
		return 0, ErrOversized
	}
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	if err := b.check(); err != nil {
		return 0, err
	}
	dst[0] = BodyVersion
	dst[1] = byte(b.PayloadType)
	dst[2], dst[3] = 0, 0
	binary.BigEndian.PutUint32(dst[4:], b.Stream)
	binary.BigEndian.PutUint64(dst[8:], b.Period)
	putTime(dst[16:], b.ReleaseAt)
	putTime(dst[24:], b.PresentAt)
	copy(dst[32:40], b.KeyID[:])
	copy(dst[40:56], b.Salt[:])
	copy(dst[56:88], b.Commitment[:])
	binary.BigEndian.PutUint32(dst[88:], uint32(len(b.Sealed)))
	copy(dst[BodyFixedLen:], b.Sealed)
	copy(dst[BodyFixedLen+len(b.Sealed):n], b.Sig[:])
	return n, nil
}

func (b *Body) check() error {
	switch {
	case b.PayloadType != PayloadContentKeys && b.PayloadType != PayloadOpaque:
		return ErrUnknownType
	case len(b.Sealed) < TagLen:
		return ErrLength
	case b.ReleaseAt < 0 || b.PresentAt < b.ReleaseAt:
		return ErrInconsistent
	}
	return nil
}

// Decode parses an ANNOUNCE body into b. Sealed aliases src.
func (b *Body) Decode(src []byte) error {
	if len(src) < MinBodyLen {
		return ErrTruncated
	}
	if len(src) > MaxBody {
		return ErrOversized
	}
	if err := b.DecodeHead(src); err != nil {
		return err
	}
	sealedLen := binary.BigEndian.Uint32(src[88:])
	if uint64(len(src)) != uint64(BodyFixedLen)+uint64(sealedLen)+SigLen {
		return ErrLength
	}
	b.Sealed = src[BodyFixedLen : BodyFixedLen+int(sealedLen)]
	copy(b.Sig[:], src[BodyFixedLen+int(sealedLen):])
	return b.check()
}

// DecodeHead parses the fixed part of a body (its first BodyFixedLen
// bytes: everything up to the sealed payload) into b, leaving Sealed and
// Sig alone. A receiver holding only a body's first data shard learns the
// commitment from it, and so can tell a forged RELEASE from the genuine
// one before the body is whole.
func (b *Body) DecodeHead(src []byte) error {
	if len(src) < BodyFixedLen {
		return ErrTruncated
	}
	if src[0] != BodyVersion {
		return ErrVersion
	}
	if src[2] != 0 || src[3] != 0 {
		return ErrReserved
	}
	b.PayloadType = PayloadType(src[1])
	if b.PayloadType != PayloadContentKeys && b.PayloadType != PayloadOpaque {
		return ErrUnknownType
	}
	b.Stream = binary.BigEndian.Uint32(src[4:])
	b.Period = binary.BigEndian.Uint64(src[8:])
	var ok1, ok2 bool
	b.ReleaseAt, ok1 = getTime(src[16:])
	b.PresentAt, ok2 = getTime(src[24:])
	if !ok1 || !ok2 || b.PresentAt < b.ReleaseAt {
		return ErrInconsistent
	}
	copy(b.KeyID[:], src[32:40])
	copy(b.Salt[:], src[40:56])
	copy(b.Commitment[:], src[56:88])
	return nil
}

// BodyAAD returns the associated data the payload is sealed with: the fixed
// part of an encoded body. body must have passed Decode or Encode.
func BodyAAD(body []byte) []byte { return body[:BodyFixedLen] }

// BodySigned returns the part of an encoded body the origin signs:
// everything before the signature.
func BodySigned(body []byte) []byte { return body[:len(body)-SigLen] }

// BodySealed returns the sealed payload of an encoded body, for sealing in
// place.
func BodySealed(body []byte) []byte { return body[BodyFixedLen : len(body)-SigLen] }

// BodySig returns the signature field of an encoded body, for signing in
// place.
func BodySig(body []byte) []byte { return body[len(body)-SigLen:] }

// Content-keys payload sizes. See PROTOCOL.md §3.4.
const (
	// WrapAES256GCM is the only key-wrapping algorithm of version 1.
	WrapAES256GCM uint8 = 1
	// KIDLen is the size of a key id (CENC / W3C ClearKey KID).
	KIDLen = 16
	// ContentKeyLen is the size of a content key (AES-128, as CENC uses).
	ContentKeyLen = 16
	// WrapNonceLen is the size of the wrapping nonce base.
	WrapNonceLen = 12
	// WrappedKeyLen is a wrapped content key: ciphertext and GCM tag.
	WrappedKeyLen = ContentKeyLen + TagLen
	// KeyEntryLen is one (KID, wrapped key) entry.
	KeyEntryLen = KIDLen + WrappedKeyLen
	// MaxContentKeys is the most entries one payload holds.
	MaxContentKeys = 64
	// contentKeysFixed is the payload's header size.
	contentKeysFixed = 16
)

// ContentKeys is the content-keys payload: a list of (KID, content key
// wrapped under the master key) entries, so that the payload tells nothing
// to anyone without the master key, even after the release.
type ContentKeys struct {
	Alg     uint8
	Nonce   [WrapNonceLen]byte // base; entry i's nonce is this XOR i (PROTOCOL.md §3.4)
	Entries []byte             // Count()×KeyEntryLen bytes: KID ‖ wrapped key
}

// Count is the number of entries.
func (c *ContentKeys) Count() int { return len(c.Entries) / KeyEntryLen }

// Entry returns entry i's KID and wrapped key, aliasing c.Entries.
func (c *ContentKeys) Entry(i int) (kid, wrapped []byte) {
	e := c.Entries[i*KeyEntryLen : (i+1)*KeyEntryLen]
	return e[:KIDLen], e[KIDLen:]
}

// Len is the encoded size of c.
func (c *ContentKeys) Len() int { return contentKeysFixed + len(c.Entries) }

// Encode writes c into dst and returns the number of bytes written.
func (c *ContentKeys) Encode(dst []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	n := c.Len()
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	dst[0] = uint8(c.Count())
	dst[1] = c.Alg
	dst[2], dst[3] = 0, 0
	copy(dst[4:16], c.Nonce[:])
	copy(dst[16:n], c.Entries)
	return n, nil
}

func (c *ContentKeys) check() error {
	switch {
	case c.Alg != WrapAES256GCM:
		return ErrUnknownType
	case len(c.Entries)%KeyEntryLen != 0:
		return ErrLength
	case c.Count() < 1 || c.Count() > MaxContentKeys:
		return ErrInconsistent
	}
	return nil
}

// Decode parses a content-keys payload into c. Entries aliases src.
func (c *ContentKeys) Decode(src []byte) error {
	if len(src) < contentKeysFixed {
		return ErrTruncated
	}
	if src[2] != 0 || src[3] != 0 {
		return ErrReserved
	}
	n := int(src[0])
	c.Alg = src[1]
	copy(c.Nonce[:], src[4:16])
	if len(src) != contentKeysFixed+n*KeyEntryLen {
		return ErrLength
	}
	c.Entries = src[16:]
	return c.check()
}
