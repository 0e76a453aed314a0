// Package pki makes the small certificate authority an embargo deployment
// needs for mutual TLS between origin, edges and packagers: a CA, a server
// certificate for the origin, and client certificates whose organizational
// unit names the role. Keys are RSA, because CPIX wraps document keys to
// the recipient's certificate with RSA-OAEP.
package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/embargo-live/embargo/internal/keyfile"
)

// Roles a client certificate can carry (its Subject OU).
const (
	RoleEdge     = "edge"
	RolePackager = "packager"
	// RolePublisher submits resources for release (embargo publish).
	RolePublisher = "publisher"
)

// KeyBits is the RSA key size of every generated key: 3072, as CPIX
// recommends for the keys documents are encrypted to (SPEKE's encryptors
// bring their own certificates, of 2048 bits or more).
const KeyBits = 3072

// Cert is a certificate with its key.
type Cert struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
	DER  []byte
}

// CA is a certificate authority.
type CA struct{ Cert }

// NewCA makes a self-signed CA valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	c, err := newCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, validity)
	if err != nil {
		return nil, err
	}
	return &CA{*c}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// Server issues a TLS server certificate for hosts (names or addresses).
func (ca *CA) Server(name string, hosts []string, validity time.Duration) (*Cert, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, validity)
}

// Client issues a TLS client certificate for role (RoleEdge, RolePackager,
// RolePublisher).
func (ca *CA) Client(name, role string, validity time.Duration) (*Cert, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{role}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (*Cert, error) {
	// Key encipherment: CPIX wraps document keys to this key.
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	return newCert(tmpl, &ca.Cert, validity)
}

// newCert makes a key and a certificate from tmpl, signed by parent or,
// when parent is nil, by itself.
func newCert(tmpl *x509.Certificate, parent *Cert, validity time.Duration) (*Cert, error) {
	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Cert: c, Key: key, DER: der}, nil
}

// TLS is c as a tls.Certificate.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.DER}, PrivateKey: c.Key, Leaf: c.Cert}
}

// Role is the role a client certificate names, or "".
func Role(c *x509.Certificate) string {
	if c == nil || len(c.Subject.OrganizationalUnit) != 1 {
		return ""
	}
	return c.Subject.OrganizationalUnit[0]
}

// Write stores c as name.pem and name.key (0600) in dir.
func (c *Cert) Write(dir, name string) error {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return err
	}
	return errors.Join(
		c.WriteCertificate(filepath.Join(dir, name+".pem")),
		os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600),
	)
}

// WriteCertificate writes the certificate alone, PEM, 0644: what a peer
// needs to verify it (a CA's certificate for its clients), no key.
func (c *Cert) WriteCertificate(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}), 0o644)
}

// Load reads name.pem and name.key from dir.
func Load(dir, name string) (*Cert, error) {
	if err := keyfile.Check(filepath.Join(dir, name+".key")); err != nil {
		return nil, err
	}
	tc, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, err
	}
	key, ok := tc.PrivateKey.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: %s.key is not an RSA key", name)
	}
	return &Cert{Cert: tc.Leaf, Key: key, DER: tc.Certificate[0]}, nil
}

// LoadPool reads a PEM CA certificate file into a pool.
func LoadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("pki: no certificate in %s", path)
	}
	return p, nil
}
