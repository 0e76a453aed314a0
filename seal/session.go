package seal

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"io"

	"github.com/embargo-live/embargo/wire"
)

// Unicast session keys (PROTOCOL.md §4.8). SUBSCRIBE carries the
// receiver's X25519 key share, SUBSCRIBED the edge's and the session key
// masked with a key both derive from the shared secret; the session key
// then authenticates KEEPALIVE, LEAVE and RESPONSE, so that a session id
// seen on the wire is not enough to end or move a subscription.

// sessionKeyInfo is HKDF's info for the mask of a session key.
const sessionKeyInfo = "embargo/v1 session key"

// NewKeyShare returns a fresh X25519 private key, whose public key is a
// SUBSCRIBE's or a SUBSCRIBED's key share.
func NewKeyShare(rand io.Reader) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand)
}

// SessionKeyMask is what masks the session key in a SUBSCRIBED:
// HKDF-SHA256(secret = X25519(priv, peer), salt = the SUBSCRIBE's nonce,
// info = "embargo/v1 session key"), 16 bytes. The receiver computes it with
// its private key and the edge's share, the edge with its private key and
// the receiver's share; the session key is SealedKey XOR mask. A peer share
// of small order is refused (an error).
func SessionKeyMask(priv *ecdh.PrivateKey, peer *[wire.KeyShareLen]byte, nonce *[wire.NonceLen]byte) ([wire.SessionKeyLen]byte, error) {
	var mask [wire.SessionKeyLen]byte
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return mask, err
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return mask, err
	}
	k, err := hkdf.Key(sha256.New, shared, nonce[:], sessionKeyInfo, wire.SessionKeyLen)
	if err != nil {
		return mask, err
	}
	copy(mask[:], k)
	return mask, nil
}

// XorKey returns a XOR b: it seals a session key under a mask and opens it.
func XorKey(a, b *[wire.SessionKeyLen]byte) [wire.SessionKeyLen]byte {
	var out [wire.SessionKeyLen]byte
	subtle.XORBytes(out[:], a[:], b[:])
	return out
}

// SessionMAC is the MAC that ends an authenticated session message:
// HMAC-SHA256(key, every byte of the datagram before the MAC), first 16
// bytes.
func SessionMAC(key *[wire.SessionKeyLen]byte, signed []byte) [wire.MACLen]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(signed)
	var out [wire.MACLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

// SignSession writes the MAC into the last wire.MACLen bytes of an
// encoded KEEPALIVE, LEAVE or RESPONSE.
func SignSession(key *[wire.SessionKeyLen]byte, b []byte) {
	n := len(b) - wire.MACLen
	mac := SessionMAC(key, b[:n])
	copy(b[n:], mac[:])
}

// VerifySession reports whether the last wire.MACLen bytes of b are its
// MAC under key, in constant time.
func VerifySession(key *[wire.SessionKeyLen]byte, b []byte) bool {
	n := len(b) - wire.MACLen
	if n < 0 {
		return false
	}
	mac := SessionMAC(key, b[:n])
	return hmac.Equal(mac[:], b[n:])
}
