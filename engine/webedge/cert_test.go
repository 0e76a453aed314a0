package webedge

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/internal/syncbuf"
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

// TestCertificateRenewal: a renewal is taken at a handshake a second or
// more after it was written, however it was written (in place, by a
// rename, by swapping symbolic links); contents that do not make a
// certificate (a key that does not match, a file missing) keep the one in
// use and are counted and shown only once they have stayed so for
// confirmFailure — a renewal half written is not a failure.
func TestCertificateRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		now := time.Now()
		a, aCert, aKey := selfSignedPEM(t, "a.example", now)
		b, bCert, bKey := selfSignedPEM(t, "b.example", now)
		write := func(dir string, cert, key []byte) {
			t.Helper()
			for f, b := range map[string][]byte{filepath.Join(dir, "cert.pem"): cert, filepath.Join(dir, "key.pem"): key} {
				if err := os.WriteFile(f, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		write(dir, aCert, aKey)
		var logs syncbuf.Buffer
		c, err := LoadCertificate(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		conf := c.TLSConfig()
		serves := func(want tls.Certificate, host string) {
			t.Helper()
			if err := handshake(t, conf, want, host); err != nil {
				t.Fatalf("want %s served: %v", host, err)
			}
		}
		serves(a, "a.example")

		// In place: taken once a second has passed since the last look.
		write(dir, bCert, bKey)
		serves(a, "a.example")
		time.Sleep(recheck)
		serves(b, "b.example")
		// By a rename over the old files.
		tmp := t.TempDir()
		write(tmp, aCert, aKey)
		for _, f := range []string{"cert.pem", "key.pem"} {
			if err := os.Rename(filepath.Join(tmp, f), filepath.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(recheck)
		serves(a, "a.example")
		// By links swapped to another directory, as certbot's live/.
		links := t.TempDir()
		for _, f := range []string{"cert.pem", "key.pem"} {
			if err := os.Symlink(filepath.Join(dir, f), filepath.Join(links, f)); err != nil {
				t.Fatal(err)
			}
		}
		lc, err := LoadCertificate(filepath.Join(links, "cert.pem"), filepath.Join(links, "key.pem"), nil)
		if err != nil {
			t.Fatal(err)
		}
		write(tmp, bCert, bKey)
		for _, f := range []string{"cert.pem", "key.pem"} {
			os.Remove(filepath.Join(links, f))
			if err := os.Symlink(filepath.Join(tmp, f), filepath.Join(links, f)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(recheck)
		if st := lc.Status(); st.Names[0] != "b.example" || st.Reloads != 1 {
			t.Errorf("after the links were swapped: %+v", st)
		}
		if st := c.Status(); st.Reloads != 2 || st.Failures != 0 || st.Err != nil {
			t.Fatalf("after two renewals: %+v", st)
		}

		// Half written, then finished within confirmFailure: no failure.
		write(dir, bCert[:len(bCert)/2], bKey)
		time.Sleep(recheck)
		serves(a, "a.example")
		write(dir, bCert, bKey)
		time.Sleep(recheck)
		serves(b, "b.example")
		if st := c.Status(); st.Failures != 0 || st.Err != nil || st.Reloads != 3 {
			t.Fatalf("a renewal written in two steps: %+v", st)
		}

		for _, bad := range []struct {
			name, reason string
			write        func()
		}{
			{"a key that does not match", "matches", func() { write(dir, aCert, bKey) }},
			{"a certificate file missing", "put the certificate", func() { os.Remove(certFile) }},
		} {
			before := c.Status().Failures
			bad.write()
			time.Sleep(recheck)
			if st := c.Status(); st.Failures != before {
				t.Fatalf("%s, just written: %+v, not yet a failure", bad.name, st)
			}
			time.Sleep(confirmFailure)
			serves(b, "b.example")
			st := c.Status()
			if st.Err == nil || st.Names[0] != "b.example" || st.Failures != before+1 {
				t.Fatalf("%s: %+v, want b.example kept, the reason, one failure more", bad.name, st)
			}
			if ok, reason := st.Describe(time.Now()); !ok || !strings.Contains(reason, "not taken") {
				t.Errorf("%s: health %v %q, want ok and the renewal refused", bad.name, ok, reason)
			}
			if !strings.Contains(logs.String(), bad.reason) {
				t.Errorf("%s: no line with the fix (%q):\n%s", bad.name, bad.reason, logs.String())
			}
			time.Sleep(3 * recheck) // still failing: counted once
		}
		if st := c.Status(); st.Failures != 2 || st.Reloads != 3 {
			t.Errorf("failures %d reloads %d, want 2 and 3", st.Failures, st.Reloads)
		}
		// The files back as they were: no longer failing.
		write(dir, bCert, bKey)
		time.Sleep(recheck)
		if st := c.Status(); st.Err != nil || st.Reloads != 3 {
			t.Errorf("the files back: %+v", st)
		}

		// A file missing at start is an error naming it.
		if _, err := LoadCertificate(filepath.Join(dir, "none.pem"), keyFile, nil); err == nil || !strings.Contains(err.Error(), "none.pem") {
			t.Errorf("missing file: %v", err)
		}
	})
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
