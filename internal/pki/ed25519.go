package pki

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// PEM encodings of the origin's Ed25519 signing key: PKCS #8 "PRIVATE
// KEY" and PKIX "PUBLIC KEY", as OpenSSL writes them.

// EncodeEd25519 returns priv as a PKCS #8 PEM block.
func EncodeEd25519(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseEd25519 reads a PKCS #8 PEM private key and requires Ed25519.
func ParseEd25519(data []byte) (ed25519.PrivateKey, error) {
	return parsePEM[ed25519.PrivateKey](data, "PRIVATE KEY", x509.ParsePKCS8PrivateKey)
}

func parsePEM[K any](data []byte, typ string, parse func([]byte) (any, error)) (K, error) {
	var zero K
	b, _ := pem.Decode(data)
	if b == nil || b.Type != typ {
		return zero, fmt.Errorf("no %q PEM block", typ)
	}
	k, err := parse(b.Bytes)
	if err != nil {
		return zero, err
	}
	key, ok := k.(K)
	if !ok {
		return zero, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return key, nil
}
