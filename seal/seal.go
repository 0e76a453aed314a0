package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/embargo-live/embargo/wire"
)

// Sentinel errors.
var (
	// ErrUnknownKey: signed by a key id the key ring does not hold.
	ErrUnknownKey = errors.New("seal: unknown signing key")
	// ErrBadSignature: the Ed25519 signature does not verify.
	ErrBadSignature = errors.New("seal: bad signature")
	// ErrWrongRK: a release secret that does not match the commitment.
	ErrWrongRK = errors.New("seal: release secret does not match commitment")
	// ErrTampered: the sealed payload does not authenticate under RK.
	ErrTampered = errors.New("seal: sealed payload does not authenticate")
	// ErrMasterKey: content keys do not unwrap under this master key.
	ErrMasterKey = errors.New("seal: content keys do not unwrap under this master key")
	// ErrKeySize: a key of the wrong length.
	ErrKeySize = errors.New("seal: wrong key size")
)

// Domain-separation labels: every hash, key derivation and signature says
// what it is for, so no value can be replayed in another role.
const (
	labelCommit    = "embargo/v1 commit\x00"
	labelSeal      = "embargo/v1 seal"
	labelWrap      = "embargo/v1 wrap"
	labelAnnounce  = "embargo/v1 announce\x00"
	labelShardRoot = "embargo/v1 shard-root\x00"
)

// MasterKeyLen is the size of an event's master key.
const MasterKeyLen = 32

// KeyID is the id of an origin signing key: the first 8 bytes of SHA-256
// over the 32-byte Ed25519 public key.
func KeyID(pub ed25519.PublicKey) [wire.KeyIDLen]byte {
	sum := sha256.Sum256(pub)
	var id [wire.KeyIDLen]byte
	copy(id[:], sum[:])
	return id
}

// Commit is the commitment to a period's release secret:
// SHA-256(labelCommit ‖ salt ‖ stream ‖ period ‖ rk). RK is 256 random bits
// and the salt is fresh per period, so the commitment admits neither a
// brute-force search nor a precomputed table.
func Commit(salt *[wire.SaltLen]byte, stream uint32, period uint64, rk *[wire.RKLen]byte) [wire.HashLen]byte {
	var buf [len(labelCommit) + wire.SaltLen + 4 + 8 + wire.RKLen]byte
	n := copy(buf[:], labelCommit)
	n += copy(buf[n:], salt[:])
	binary.BigEndian.PutUint32(buf[n:], stream)
	binary.BigEndian.PutUint64(buf[n+4:], period)
	copy(buf[n+12:], rk[:])
	return sha256.Sum256(buf[:])
}

// CheckRK reports whether rk opens body b's commitment, in constant time.
func CheckRK(b *wire.Body, rk *[wire.RKLen]byte) bool {
	c := Commit(&b.Salt, b.Stream, b.Period, rk)
	return subtle.ConstantTimeCompare(c[:], b.Commitment[:]) == 1
}

// SealKey derives the AES-256-GCM key a period's payload is sealed under:
// HKDF-SHA256(secret RK, salt, info "embargo/v1 seal"), 32 bytes.
func SealKey(rk *[wire.RKLen]byte, salt *[wire.SaltLen]byte) ([]byte, error) {
	return hkdf.Key(sha256.New, rk[:], salt[:], labelSeal, 32)
}

// payloadAEAD is the period's sealing AEAD. The key is fresh per period,
// so the all-zero nonce is used exactly once.
func payloadAEAD(rk *[wire.RKLen]byte, salt *[wire.SaltLen]byte) (cipher.AEAD, error) {
	key, err := SealKey(rk, salt)
	if err != nil {
		return nil, err
	}
	return newGCM(key)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Announcement is what an origin announces for one key period.
type Announcement struct {
	Stream      uint32
	Period      uint64
	ReleaseAt   int64 // TAI ns
	PresentAt   int64 // TAI ns, ≥ ReleaseAt
	PayloadType wire.PayloadType
	Payload     []byte // plaintext: a wire.ContentKeys encoding, or any resource
}

// BuildAnnounce draws a fresh release secret and salt from rand, seals
// a.Payload under the secret, commits to it, and signs the body with
// signer. It returns the encoded body and the secret, which the origin
// keeps confidential until it hands it to edges.
func BuildAnnounce(signer ed25519.PrivateKey, a *Announcement, rand io.Reader) (body []byte, rk [wire.RKLen]byte, err error) {
	if len(signer) != ed25519.PrivateKeySize {
		return nil, rk, ErrKeySize
	}
	b := wire.Body{
		PayloadType: a.PayloadType,
		Stream:      a.Stream,
		Period:      a.Period,
		ReleaseAt:   a.ReleaseAt,
		PresentAt:   a.PresentAt,
		KeyID:       KeyID(signer.Public().(ed25519.PublicKey)),
	}
	if _, err := io.ReadFull(rand, rk[:]); err != nil {
		return nil, rk, fmt.Errorf("release secret: %w", err)
	}
	if _, err := io.ReadFull(rand, b.Salt[:]); err != nil {
		return nil, rk, fmt.Errorf("salt: %w", err)
	}
	b.Commitment = Commit(&b.Salt, b.Stream, b.Period, &rk)
	b.Sealed = make([]byte, len(a.Payload)+wire.TagLen) // placeholder, sealed in place below
	body = make([]byte, b.Len())
	if _, err := b.Encode(body); err != nil {
		return nil, rk, fmt.Errorf("encode body: %w", err)
	}
	aead, err := payloadAEAD(&rk, &b.Salt)
	if err != nil {
		return nil, rk, err
	}
	var nonce [12]byte
	aead.Seal(wire.BodySealed(body)[:0], nonce[:], a.Payload, wire.BodyAAD(body))
	copy(wire.BodySig(body), ed25519.Sign(signer, announceMessage(body)))
	return body, rk, nil
}

// OpenAnnounce checks rk against the commitment of the decoded body b
// (whose encoding is body) and returns the opened payload, appended to dst.
func OpenAnnounce(dst, body []byte, b *wire.Body, rk *[wire.RKLen]byte) ([]byte, error) {
	if !CheckRK(b, rk) {
		return dst, ErrWrongRK
	}
	aead, err := payloadAEAD(rk, &b.Salt)
	if err != nil {
		return dst, err
	}
	var nonce [12]byte
	out, err := aead.Open(dst, nonce[:], b.Sealed, wire.BodyAAD(body))
	if err != nil {
		return dst, ErrTampered
	}
	return out, nil
}

func announceMessage(body []byte) []byte {
	signed := wire.BodySigned(body)
	msg := make([]byte, 0, len(labelAnnounce)+len(signed))
	return append(append(msg, labelAnnounce...), signed...)
}

// shardRootMessage is what the origin signs for a shard set:
// labelShardRoot ‖ stream ‖ period ‖ k ‖ m ‖ shardSize ‖ bodyLen ‖ keyID ‖ root.
func shardRootMessage(buf *[shardRootMsgLen]byte, s *wire.Shard) []byte {
	n := copy(buf[:], labelShardRoot)
	binary.BigEndian.PutUint32(buf[n:], s.Stream)
	binary.BigEndian.PutUint64(buf[n+4:], s.Period)
	buf[n+12], buf[n+13] = s.K, s.M
	binary.BigEndian.PutUint16(buf[n+14:], s.ShardSize)
	binary.BigEndian.PutUint32(buf[n+16:], s.BodyLen)
	copy(buf[n+20:], s.KeyID[:])
	copy(buf[n+28:], s.Root[:])
	return buf[:]
}

const shardRootMsgLen = len(labelShardRoot) + 28 + wire.HashLen

// SignShardRoot sets s.KeyID and signs s's stream, period, geometry and
// Merkle root into s.Sig. Every shard of a set carries the same signature.
func SignShardRoot(signer ed25519.PrivateKey, s *wire.Shard) error {
	if len(signer) != ed25519.PrivateKeySize {
		return ErrKeySize
	}
	s.KeyID = KeyID(signer.Public().(ed25519.PublicKey))
	var buf [shardRootMsgLen]byte
	copy(s.Sig[:], ed25519.Sign(signer, shardRootMessage(&buf, s)))
	return nil
}
