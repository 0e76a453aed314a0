package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestEd25519PEM(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	privPEM, err := EncodeEd25519(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseEd25519(privPEM); err != nil || !got.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if _, err := ParseEd25519(pubPEM); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("public PEM read as private: %v", err)
	}
}

// TestIssueAndLoad: a client certificate verifies against its CA, carries
// its role, and reads back from disk whole.
func TestIssueAndLoad(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Client("edge-1", RoleEdge, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert.Cert)
	if _, err := c.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not verify: %v", err)
	}
	if !ca.Cert.Cert.IsCA || Role(c.Cert) != RoleEdge {
		t.Fatalf("CA %v, role %q", ca.Cert.Cert.IsCA, Role(c.Cert))
	}
	dir := t.TempDir()
	if err := c.Write(dir, "edge"); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, "edge")
	if err != nil || got.Cert == nil || !got.Cert.Equal(c.Cert) || !got.Key.Equal(c.Key) {
		t.Fatalf("Load: %v", err)
	}
}
