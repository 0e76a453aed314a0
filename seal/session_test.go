package seal

import (
	"crypto/ed25519"
	"testing"

	"github.com/embargo-live/embargo/wire"
)

// TestSessionKeyAgreement: the receiver and the edge derive the same mask
// from their own private key and the other's share, so the receiver opens
// the key the edge sealed; the MAC verifies under it and under no other
// key, and not once a byte changes.
func TestSessionKeyAgreement(t *testing.T) {
	rx, err := NewKeyShare(testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	edge, err := NewKeyShare(testRand(2))
	if err != nil {
		t.Fatal(err)
	}
	nonce, id := [wire.NonceLen]byte{1}, [wire.SessionIDLen]byte{2}
	rxShare, edgeShare := [32]byte(rx.PublicKey().Bytes()), [32]byte(edge.PublicKey().Bytes())
	key := [wire.SessionKeyLen]byte{9, 9, 9}
	em, err := SessionKeyMask(edge, &rxShare, &nonce)
	if err != nil {
		t.Fatal(err)
	}
	sealed := XorKey(&key, &em)
	rm, err := SessionKeyMask(rx, &edgeShare, &nonce)
	if err != nil {
		t.Fatal(err)
	}
	if got := XorKey(&sealed, &rm); got != key {
		t.Fatalf("receiver opened %x, edge sealed %x", got, key)
	}
	other := [wire.NonceLen]byte{3}
	if m, _ := SessionKeyMask(rx, &edgeShare, &other); m == rm {
		t.Error("the mask does not depend on the nonce")
	}
	if _, err := SessionKeyMask(rx, &[32]byte{}, &nonce); err == nil {
		t.Error("an all-zero (small-order) share was accepted")
	}

	b := make([]byte, wire.KeepaliveLen)
	if _, err := (&wire.Keepalive{SessionID: id, Seq: 1}).Encode(b); err != nil {
		t.Fatal(err)
	}
	SignSession(&key, b)
	if !VerifySession(&key, b) {
		t.Fatal("a signed KEEPALIVE does not verify")
	}
	if VerifySession(&[wire.SessionKeyLen]byte{}, b) {
		t.Error("verifies under another key")
	}
	b[30] ^= 1
	if VerifySession(&key, b) {
		t.Error("verifies after a change")
	}
	if VerifySession(&key, b[:3]) {
		t.Error("a datagram shorter than a MAC verifies")
	}
}

// TestToken: a token verifies against the ring that holds its signer, and
// is refused expired, too long-lived, changed, or signed by another key.
func TestToken(t *testing.T) {
	signer := testSigner(1)
	ring := NewKeyRing(signer.Public().(ed25519.PublicKey))
	const now, life = int64(1e18), int64(600e9)
	b := SignToken(signer, &wire.Token{NotAfter: now + life, Viewer: [8]byte{7}})
	if tok, err := ring.VerifyToken(b, now, life); err != nil || tok.Viewer != [8]byte{7} {
		t.Fatalf("genuine token: %v, %+v", err, tok)
	}
	if _, err := ring.VerifyToken(b, now+life, life); err != ErrTokenExpired {
		t.Errorf("at NotAfter: %v, want ErrTokenExpired", err)
	}
	if _, err := ring.VerifyToken(b, now, life-1); err != ErrTokenExpired {
		t.Errorf("living longer than allowed: %v, want ErrTokenExpired", err)
	}
	bad := append([]byte(nil), b...)
	bad[20] ^= 1
	if _, err := ring.VerifyToken(bad, now, life); err != ErrBadSignature {
		t.Errorf("changed viewer: %v, want ErrBadSignature", err)
	}
	other := SignToken(testSigner(2), &wire.Token{NotAfter: now + life})
	if _, err := ring.VerifyToken(other, now, life); err != ErrUnknownKey {
		t.Errorf("unknown signer: %v, want ErrUnknownKey", err)
	}
	if _, err := ring.VerifyToken(b[:10], now, life); err == nil {
		t.Error("a truncated token verified")
	}
}
