package cpix

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
)

const (
	docKeyLen = 32 // CPIX: the Document Key is an AES-256 key
	macKeyLen = 64 // HMAC-SHA512's output size: more adds nothing
	macLen    = sha512.Size
	// minRSABits: CPIX recommends 3072; SPEKE requires 2048, so 2048 is
	// the floor and anything smaller is refused.
	minRSABits = 2048
)

// delivery holds one document's symmetric keys: the Document Key that
// encrypts every content key value and the MAC key that authenticates each
// encrypted value. Both are fresh per document and reach the recipient
// wrapped with RSA-OAEP to its certificate's key.
type delivery struct {
	docKey cipher.Block
	macKey []byte
}

func newDelivery() (*delivery, []byte, error) {
	raw := make([]byte, docKeyLen+macKeyLen)
	rand.Read(raw) // never fails (crypto/rand, Go ≥ 1.24)
	d, err := deliveryFrom(raw[:docKeyLen], raw[docKeyLen:])
	return d, raw, err
}

func deliveryFrom(docKey, macKey []byte) (*delivery, error) {
	if len(docKey) != docKeyLen {
		return nil, fmt.Errorf("%w: document key of %d bytes", ErrMalformed, len(docKey))
	}
	if len(macKey) < 16 {
		return nil, fmt.Errorf("%w: MAC key of %d bytes", ErrMalformed, len(macKey))
	}
	b, err := aes.NewCipher(docKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &delivery{docKey: b, macKey: macKey}, nil
}

// seal encrypts a value as CPIX prescribes, IV ‖ AES-256-CBC(PKCS#7(v)),
// and returns it with its ValueMAC, HMAC-SHA512 over those same bytes.
func (d *delivery) seal(v []byte) (cv, mac []byte) {
	n := len(v) + aes.BlockSize - len(v)%aes.BlockSize
	cv = make([]byte, aes.BlockSize+n)
	rand.Read(cv[:aes.BlockSize])
	body := cv[aes.BlockSize:]
	copy(body, v)
	for i := len(v); i < n; i++ {
		body[i] = byte(n - len(v))
	}
	cipher.NewCBCEncrypter(d.docKey, cv[:aes.BlockSize]).CryptBlocks(body, body)
	return cv, d.mac(cv)
}

func (d *delivery) mac(parts ...[]byte) []byte {
	m := hmac.New(sha512.New, d.macKey)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// verify compares in constant time; it must pass before open is called,
// so that a tampered ciphertext never reaches the CBC padding check.
func (d *delivery) verify(cv, mac []byte) bool {
	return hmac.Equal(d.mac(cv), mac)
}

// open decrypts a verified value and requires it to be want bytes long.
func (d *delivery) open(cv []byte, want int) ([]byte, error) {
	if len(cv) < 2*aes.BlockSize || len(cv)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: encrypted value of %d bytes", ErrMalformed, len(cv))
	}
	out := make([]byte, len(cv)-aes.BlockSize)
	cipher.NewCBCDecrypter(d.docKey, cv[:aes.BlockSize]).CryptBlocks(out, cv[aes.BlockSize:])
	p := int(out[len(out)-1])
	if p < 1 || p > aes.BlockSize {
		return nil, fmt.Errorf("%w: bad padding", ErrMalformed)
	}
	for _, c := range out[len(out)-p:] {
		if int(c) != p {
			return nil, fmt.Errorf("%w: bad padding", ErrMalformed)
		}
	}
	out = out[:len(out)-p]
	if len(out) != want {
		return nil, fmt.Errorf("%w: value of %d bytes, want %d", ErrMalformed, len(out), want)
	}
	return out, nil
}

// recipientKey is the RSA key a document is encrypted to.
func recipientKey(cert *x509.Certificate) (*rsa.PublicKey, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no recipient certificate", ErrInvalid)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: recipient key is %T, CPIX needs RSA", ErrUnsupported, cert.PublicKey)
	}
	if pub.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("%w: %d-bit RSA recipient key", ErrUnsupported, pub.N.BitLen())
	}
	return pub, nil
}

// wrap is xmlenc's rsa-oaep-mgf1p: OAEP with SHA-1 as both the digest and
// the MGF1 hash, and no label (OAEPparams absent).
func wrap(pub *rsa.PublicKey, key []byte) ([]byte, error) {
	out, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, key, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: rsa-oaep: %w", ErrUnsupported, err)
	}
	return out, nil
}

func unwrap(priv *rsa.PrivateKey, ct []byte) ([]byte, error) {
	out, err := rsa.DecryptOAEP(sha1.New(), nil, priv, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key does not unwrap", ErrMAC)
	}
	return out, nil
}
