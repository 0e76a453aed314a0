package seal

import (
	"crypto/rand"
	"testing"

	"github.com/embargo-live/embargo/wire"
)

// BenchmarkSessionKeyMask is the edge's cost per SUBSCRIBE: one X25519
// and an HKDF.
func BenchmarkSessionKeyMask(b *testing.B) {
	edge, _ := NewKeyShare(rand.Reader)
	rx, _ := NewKeyShare(rand.Reader)
	share := [wire.KeyShareLen]byte(rx.PublicKey().Bytes())
	var nonce [wire.NonceLen]byte
	for b.Loop() {
		if _, err := SessionKeyMask(edge, &share, &nonce); err != nil {
			b.Fatal(err)
		}
	}
}
