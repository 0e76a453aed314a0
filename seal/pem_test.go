package seal

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestPublicKeyPEM(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	data, err := EncodePublicKey(pub)
	if err != nil || !strings.HasPrefix(string(data), "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("%s %v", data, err)
	}
	if got, err := ParsePublicKey(data); err != nil || !got.Equal(pub) {
		t.Fatalf("round trip: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err == nil || !strings.Contains(err.Error(), "not an Ed25519 key") {
		t.Errorf("ECDSA key accepted: %v", err)
	}
	if _, err := ParsePublicKey([]byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")); err == nil || !strings.Contains(err.Error(), "PUBLIC KEY") {
		t.Errorf("private PEM read as public: %v", err)
	}
}
