package webedge

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Certificate is the edge's TLS certificate for browsers (WebTransport,
// and WebSocket over TLS). From PEM files it is read again, at most once a
// second, at a handshake or Status, and taken when their contents change
// and make a certificate — however a renewal writes them (in place, by a
// rename, by swapping symbolic links) — so taking a renewed certificate
// needs no restart and drops no session. Contents that do not make one
// (a key that does not match, a file half written, a file missing) keep
// the certificate in use; once they have stayed so for confirmFailure,
// which a renewal's writes take much less than, they are counted, logged
// and shown by Status.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cur      *tls.Certificate // Leaf set
	curSum   [sha256.Size]byte
	checked  time.Time         // when the files were last read
	bad      [sha256.Size]byte // what the files held when they last failed
	badSince time.Time         // zero: they did not fail
	counted  bool              // the failure of bad is counted
	err      error             // why the files as they are were not taken, once confirmed
	reloads  uint64
	failures uint64
}

// Intervals of a Certificate's checks.
const (
	recheck        = time.Second
	confirmFailure = 2 * time.Second
)

// CertificateStatus is a Certificate as it stands.
type CertificateStatus struct {
	// Names are the certificate's DNS names and IP addresses; NotBefore
	// and NotAfter its validity.
	Names             []string
	NotBefore         time.Time
	NotAfter          time.Time
	File              string // the certificate's file; "" for one made in memory
	Reloads, Failures uint64 // renewals taken, and attempts that failed
	// Err is why the files as they are now were not taken (the previous
	// certificate is in use); nil when they were.
	Err error
}

// LoadCertificate reads certFile and keyFile (PEM), as crypto/tls does, and
// watches them for renewals. log gets a line for each renewal taken or
// refused.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log}
	cert, sum, err := c.read()
	if err != nil {
		return nil, err
	}
	c.cur, c.curSum, c.checked = cert, sum, time.Now()
	return c, nil
}

// FixedCertificate is cert, never reloaded: a self-signed one (SelfSigned)
// for labs.
func FixedCertificate(cert tls.Certificate) (*Certificate, error) {
	if err := setLeaf(&cert); err != nil {
		return nil, err
	}
	return &Certificate{cur: &cert}, nil
}

// TLSConfig serves the certificate as it stands at each handshake.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.refresh()
		return c.cur, nil
	}}
}

// Status reads the files again if they changed, and returns the
// certificate in use.
func (c *Certificate) Status() CertificateStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh()
	l := c.cur.Leaf
	names := append([]string(nil), l.DNSNames...)
	for _, ip := range l.IPAddresses {
		names = append(names, ip.String())
	}
	return CertificateStatus{Names: names, NotBefore: l.NotBefore, NotAfter: l.NotAfter, File: c.certFile,
		Reloads: c.reloads, Failures: c.failures, Err: c.err}
}

// refresh reads the files, at most once every recheck, and takes what
// they hold if it changed and makes a certificate. The caller holds mu.
func (c *Certificate) refresh() {
	now := time.Now()
	if c.certFile == "" || now.Sub(c.checked) < recheck {
		return
	}
	c.checked = now
	cert, sum, err := c.read()
	switch {
	case err == nil && sum == c.curSum:
		c.badSince, c.err = time.Time{}, nil // back to what is in use
	case err == nil:
		c.cur, c.curSum, c.badSince, c.err = cert, sum, time.Time{}, nil
		c.reloads++
		c.log.Info("browsers: renewed certificate taken", "file", c.certFile, "valid until", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case c.badSince.IsZero() || sum != c.bad:
		// New contents that fail: perhaps a renewal half written. Wait.
		c.bad, c.badSince, c.counted = sum, now, false
	case !c.counted && now.Sub(c.badSince) >= confirmFailure:
		c.err, c.counted = err, true
		c.failures++
		c.log.Error(fmt.Sprintf("browsers: %v; still serving the certificate valid until %s. Fix: %s", err, c.cur.Leaf.NotAfter.UTC().Format(time.RFC3339), certFix(err)))
	}
}

// read reads both files and makes a certificate of them. sum is of what
// was read, or of the error if a file could not be.
func (c *Certificate) read() (*tls.Certificate, [sha256.Size]byte, error) {
	certPEM, err1 := os.ReadFile(c.certFile)
	keyPEM, err2 := os.ReadFile(c.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return nil, sha256.Sum256([]byte(err.Error())), fmt.Errorf("webedge: certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	sum := [sha256.Size]byte(h.Sum(nil))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		err = setLeaf(&cert)
	}
	if err != nil {
		return nil, sum, fmt.Errorf("webedge: certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	return &cert, sum, nil
}

// certFix is what to do about err, in a few words.
func certFix(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return "make both files readable by the edge's user (deploy/embargo-edge.service: a group it joins, 0640)"
	case errors.Is(err, fs.ErrNotExist):
		return "put the certificate and key back at these paths, or point -browser-cert at them"
	default:
		return "write a certificate and the key that matches it, both PEM"
	}
}

// setLeaf makes sure cert.Leaf is parsed (tls.LoadX509KeyPair sets it).
func setLeaf(cert *tls.Certificate) error {
	if cert.Leaf != nil {
		return nil
	}
	if len(cert.Certificate) == 0 {
		return errors.New("webedge: certificate: none in the chain")
	}
	var err error
	cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	return err
}

// Describe is the status in one line for health: the names, the validity
// left at now, and a renewal refused.
func (st CertificateStatus) Describe(now time.Time) (ok bool, reason string) {
	names := strings.Join(st.Names, ",")
	fix := "renew " + st.File + " and its key (the edge reads them again when they change)"
	if st.File == "" {
		fix = "restart the edge for a new self-signed certificate (pages pin its new hash) or give it a real one (-browser-cert)"
	}
	switch {
	case now.After(st.NotAfter):
		return false, fmt.Sprintf("the certificate for %s expired at %s: browsers cannot connect; %s", names, st.NotAfter.UTC().Format(time.RFC3339), fix)
	case now.Before(st.NotBefore):
		return false, fmt.Sprintf("the certificate for %s is not valid until %s: browsers cannot connect; check this host's clock or the certificate", names, st.NotBefore.UTC().Format(time.RFC3339))
	}
	reason = fmt.Sprintf("certificate for %s valid until %s (%.1f days)", names, st.NotAfter.UTC().Format(time.RFC3339), st.NotAfter.Sub(now).Hours()/24)
	if st.Err != nil {
		reason += fmt.Sprintf("; the renewed files were not taken (%v)", st.Err)
	}
	return true, reason
}
