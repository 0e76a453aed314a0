package webedge

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// selfSignedPEM makes a certificate for host valid from now and returns
// it with its certificate and key as PEM.
func selfSignedPEM(t *testing.T, host string, now time.Time) (tls.Certificate, []byte, []byte) {
	t.Helper()
	conf, _, err := SelfSigned([]string{host}, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := conf.Certificates[0]
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// handshake connects a client that trusts only want to a server on conf,
// and reports whether the server presented want.
func handshake(t *testing.T, conf *tls.Config, want tls.Certificate, host string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(want.Leaf)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, conf)
	go srv.Handshake()
	return tls.Client(b, &tls.Config{RootCAs: roots, ServerName: host}).Handshake()
}

// TestCertificateRenewal: a renewed certificate is taken at the next
// handshake, without a restart; a renewal that cannot be used (a key that
// does not match, a file cut short) keeps the one in use and says why,
// once per change of the files.
func TestCertificateRenewal(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	now := time.Now()
	a, aCert, aKey := selfSignedPEM(t, "a.example", now)
	b, bCert, bKey := selfSignedPEM(t, "b.example", now)
	version := now
	write := func(cert, key []byte) {
		t.Helper()
		// Each write a second later, as a renewal would be: a file's
		// time changes even where the filesystem keeps whole seconds.
		version = version.Add(time.Second)
		for f, b := range map[string][]byte{certFile: cert, keyFile: key} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(f, version, version); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(aCert, aKey)
	c, err := LoadCertificate(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := c.TLSConfig()
	if err := handshake(t, conf, a, "a.example"); err != nil {
		t.Fatalf("the first certificate: %v", err)
	}

	write(bCert, bKey)
	if err := handshake(t, conf, b, "b.example"); err != nil {
		t.Fatalf("after renewal, the server did not present the new certificate: %v", err)
	}
	if st := c.Status(); st.Reloads != 1 || st.Failures != 0 || st.Err != nil || st.Names[0] != "b.example" {
		t.Fatalf("after renewal: %+v", st)
	}

	for _, bad := range []struct {
		name      string
		cert, key []byte
	}{
		{"a key that does not match", aCert, bKey},
		{"a certificate cut short", aCert[:len(aCert)/2], aKey},
	} {
		write(bad.cert, bad.key)
		if err := handshake(t, conf, b, "b.example"); err != nil {
			t.Fatalf("%s: the certificate in use was not kept: %v", bad.name, err)
		}
		st := c.Status()
		if st.Err == nil || st.Names[0] != "b.example" {
			t.Fatalf("%s: status %+v, want b.example kept and the reason", bad.name, st)
		}
		if ok, reason := st.Describe(now); !ok || !strings.Contains(reason, "not taken") {
			t.Errorf("%s: health %v %q, want ok and the renewal refused", bad.name, ok, reason)
		}
	}
	// Two files changed twice: two failures, not one per handshake or
	// status read.
	if st := c.Status(); st.Failures != 2 || st.Reloads != 1 {
		t.Errorf("failures %d reloads %d, want 2 and 1", st.Failures, st.Reloads)
	}
	write(aCert, aKey)
	if err := handshake(t, conf, a, "a.example"); err != nil {
		t.Fatalf("a good renewal after bad ones: %v", err)
	}
	if st := c.Status(); st.Err != nil || st.Reloads != 2 {
		t.Errorf("after a good renewal: %+v", st)
	}

	// A file missing at start is an error naming it.
	if _, err := LoadCertificate(filepath.Join(dir, "none.pem"), keyFile, nil); err == nil || !strings.Contains(err.Error(), "none.pem") {
		t.Errorf("missing file: %v", err)
	}
}

// TestCertificateExpiry: health says a certificate is good with the days
// it has left, and not good once it has expired, with the fix — for a
// self-signed one, a restart.
func TestCertificateExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conf, _, err := SelfSigned([]string{"edge.example"}, time.Now(), 13*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := FixedCertificate(conf.Certificates[0])
		if err != nil {
			t.Fatal(err)
		}
		ok, reason := c.Status().Describe(time.Now())
		if !ok || !strings.Contains(reason, "edge.example") || !strings.Contains(reason, "13.0 days") {
			t.Errorf("new: %v %q", ok, reason)
		}
		time.Sleep(13 * 24 * time.Hour)
		ok, reason = c.Status().Describe(time.Now())
		if ok || !strings.Contains(reason, "expired") || !strings.Contains(reason, "restart the edge") {
			t.Errorf("after 13 days: %v %q, want expired and the fix", ok, reason)
		}
	})
}
