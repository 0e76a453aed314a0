package seal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/embargo-live/embargo/wire"
)

// ContentKey is one CENC content key and its key id.
type ContentKey struct {
	KID [wire.KIDLen]byte
	Key [wire.ContentKeyLen]byte
}

// WrapKey derives the AES-256-GCM key content keys are wrapped under from
// an event's master key: HKDF-SHA256(secret master, no salt, info
// "embargo/v1 wrap"), 32 bytes.
func WrapKey(master []byte) ([]byte, error) {
	if len(master) != MasterKeyLen {
		return nil, ErrKeySize
	}
	return hkdf.Key(sha256.New, master, nil, labelWrap, 32)
}

func wrapAEAD(master []byte) (cipher.AEAD, error) {
	key, err := WrapKey(master)
	if err != nil {
		return nil, err
	}
	return newGCM(key)
}

// wrapNonce is entry i's nonce: the payload's random base with its last
// four bytes XORed with i.
func wrapNonce(base *[wire.WrapNonceLen]byte, i int) [wire.WrapNonceLen]byte {
	n := *base
	binary.BigEndian.PutUint32(n[8:], binary.BigEndian.Uint32(n[8:])^uint32(i))
	return n
}

// wrapAAD binds an entry to its stream, period and KID.
func wrapAAD(buf *[4 + 8 + wire.KIDLen]byte, stream uint32, period uint64, kid []byte) []byte {
	binary.BigEndian.PutUint32(buf[0:], stream)
	binary.BigEndian.PutUint64(buf[4:], period)
	copy(buf[12:], kid)
	return buf[:]
}

// WrapKeys encodes keys as a content-keys payload for one period, each key
// wrapped under master with AES-256-GCM (PROTOCOL.md §6.4).
func WrapKeys(master []byte, stream uint32, period uint64, keys []ContentKey, rand io.Reader) ([]byte, error) {
	aead, err := wrapAEAD(master)
	if err != nil {
		return nil, err
	}
	ck := wire.ContentKeys{Alg: wire.WrapAES256GCM, Entries: make([]byte, 0, len(keys)*wire.KeyEntryLen)}
	if _, err := io.ReadFull(rand, ck.Nonce[:]); err != nil {
		return nil, fmt.Errorf("wrap nonce: %w", err)
	}
	var aad [4 + 8 + wire.KIDLen]byte
	for i := range keys {
		nonce := wrapNonce(&ck.Nonce, i)
		ck.Entries = append(ck.Entries, keys[i].KID[:]...)
		ck.Entries = aead.Seal(ck.Entries, nonce[:], keys[i].Key[:], wrapAAD(&aad, stream, period, keys[i].KID[:]))
	}
	out := make([]byte, ck.Len())
	if _, err := ck.Encode(out); err != nil {
		return nil, fmt.Errorf("encode content keys: %w", err)
	}
	return out, nil
}

// UnwrapKeys decodes a content-keys payload of the given period and
// unwraps every key under master, appending them to dst. A wrong master
// key yields ErrMasterKey and no key.
func UnwrapKeys(dst []ContentKey, master []byte, stream uint32, period uint64, payload []byte) ([]ContentKey, error) {
	var ck wire.ContentKeys
	if err := ck.Decode(payload); err != nil {
		return dst, fmt.Errorf("content keys: %w", err)
	}
	aead, err := wrapAEAD(master)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	var aad [4 + 8 + wire.KIDLen]byte
	for i := range ck.Count() {
		kid, wrapped := ck.Entry(i)
		nonce := wrapNonce(&ck.Nonce, i)
		var k ContentKey
		copy(k.KID[:], kid)
		if _, err := aead.Open(k.Key[:0], nonce[:], wrapped, wrapAAD(&aad, stream, period, kid)); err != nil {
			return dst[:start], ErrMasterKey
		}
		dst = append(dst, k)
	}
	return dst, nil
}
