package seal

import (
	"crypto/ed25519"
	"sync"

	"github.com/embargo-live/embargo/wire"
)

// KeyRing holds the origin public keys a receiver or edge trusts, by key
// id. It is safe for concurrent use; keys can be added while verifying
// (origin key rotation).
type KeyRing struct {
	mu   sync.RWMutex
	keys map[[wire.KeyIDLen]byte]ed25519.PublicKey
}

// NewKeyRing returns a ring trusting the given keys.
func NewKeyRing(keys ...ed25519.PublicKey) *KeyRing {
	r := &KeyRing{keys: make(map[[wire.KeyIDLen]byte]ed25519.PublicKey)}
	for _, k := range keys {
		r.Add(k)
	}
	return r
}

// Add trusts key from now on.
func (r *KeyRing) Add(key ed25519.PublicKey) {
	r.mu.Lock()
	r.keys[KeyID(key)] = key
	r.mu.Unlock()
}

func (r *KeyRing) lookup(id [wire.KeyIDLen]byte) (ed25519.PublicKey, error) {
	r.mu.RLock()
	k, ok := r.keys[id]
	r.mu.RUnlock()
	if !ok || len(k) != ed25519.PublicKeySize {
		return nil, ErrUnknownKey
	}
	return k, nil
}

// Knows reports whether the ring holds a key of id: a cheap test before a
// signature check (fec.KeyKnower).
func (r *KeyRing) Knows(id [wire.KeyIDLen]byte) bool {
	_, err := r.lookup(id)
	return err == nil
}

// VerifyShardRoot checks the origin's signature over s's stream, period,
// geometry and Merkle root. It does not check s's Merkle proof.
func (r *KeyRing) VerifyShardRoot(s *wire.Shard) error {
	k, err := r.lookup(s.KeyID)
	if err != nil {
		return err
	}
	var buf [shardRootMsgLen]byte
	if !ed25519.Verify(k, shardRootMessage(&buf, s), s.Sig[:]) {
		return ErrBadSignature
	}
	return nil
}

// VerifyAnnounce checks the origin's signature over an encoded body, which
// b is the decoding of.
func (r *KeyRing) VerifyAnnounce(body []byte, b *wire.Body) error {
	k, err := r.lookup(b.KeyID)
	if err != nil {
		return err
	}
	if !ed25519.Verify(k, announceMessage(body), b.Sig[:]) {
		return ErrBadSignature
	}
	return nil
}
