package seal

import (
	"crypto/ed25519"
	"errors"

	"github.com/embargo-live/embargo/wire"
)

// labelToken prefixes the signed bytes of a subscription token, so that no
// other signature of the origin's verifies as one.
const labelToken = "embargo/v1 subscription token\x00"

// ErrTokenExpired: a subscription token whose NotAfter has passed, or that
// claims to live longer than the checker allows.
var ErrTokenExpired = errors.New("seal: subscription token expired or too long-lived")

func tokenMessage(b *[wire.TokenLen]byte) []byte {
	return append([]byte(labelToken), b[:wire.TokenLen-wire.SigLen]...)
}

// SignToken fills t's key id and signature with signer's and returns the
// encoded token (PROTOCOL.md §4.10).
func SignToken(signer ed25519.PrivateKey, t *wire.Token) []byte {
	t.KeyID = KeyID(signer.Public().(ed25519.PublicKey))
	var b [wire.TokenLen]byte
	t.Encode(b[:])
	copy(t.Sig[:], ed25519.Sign(signer, tokenMessage(&b)))
	t.Encode(b[:])
	return b[:]
}

// VerifyToken decodes the token in b and checks it offline: signed by a
// key in the ring, NotAfter after now (TAI ns) and at most maxLife after
// it. It returns the decoded token.
func (r *KeyRing) VerifyToken(b []byte, now, maxLife int64) (wire.Token, error) {
	var t wire.Token
	if err := t.Decode(b); err != nil {
		return t, err
	}
	if t.NotAfter <= now || t.NotAfter-now > maxLife {
		return t, ErrTokenExpired
	}
	k, err := r.lookup(t.KeyID)
	if err != nil {
		return t, err
	}
	if !ed25519.Verify(k, tokenMessage((*[wire.TokenLen]byte)(b)), t.Sig[:]) {
		return t, ErrBadSignature
	}
	return t, nil
}
