package wire

import "encoding/binary"

// TokenLen is the size of a subscription token (PROTOCOL.md §4.10).
const TokenLen = KeyIDLen + 8 + 8 + SigLen

// Token is a subscription token: the origin's word, signed with its
// Ed25519 key, that a viewer holds a licence until NotAfter. An edge that
// requires tokens checks one offline against the origin keys it trusts
// (package seal signs and verifies; this is only the layout).
type Token struct {
	KeyID    [KeyIDLen]byte // the signing key's id (§6.1)
	NotAfter int64          // TAI ns: the token is refused from this instant
	Viewer   [8]byte        // the licence's viewer, opaque to an edge
	Sig      [SigLen]byte   // over a context label ‖ the 24 bytes before it (package seal)
}

// Len is the encoded size of t.
func (t *Token) Len() int { return TokenLen }

// Encode writes t into b and returns the number of bytes written.
func (t *Token) Encode(b []byte) (int, error) {
	if len(b) < TokenLen {
		return 0, ErrShortBuffer
	}
	copy(b, t.KeyID[:])
	binary.BigEndian.PutUint64(b[8:], uint64(t.NotAfter))
	copy(b[16:], t.Viewer[:])
	copy(b[24:], t.Sig[:])
	return TokenLen, nil
}

// Decode parses a token into t.
func (t *Token) Decode(b []byte) error {
	if len(b) != TokenLen {
		return ErrLength
	}
	copy(t.KeyID[:], b)
	t.NotAfter = int64(binary.BigEndian.Uint64(b[8:]))
	copy(t.Viewer[:], b[16:])
	copy(t.Sig[:], b[24:])
	return nil
}

// Signed is the part of an encoded token its signature covers, without
// the context label.
func (t *Token) Signed(b []byte) []byte { return b[:TokenLen-SigLen] }
