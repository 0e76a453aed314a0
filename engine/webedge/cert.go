package webedge

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Certificate is the edge's TLS certificate for browsers (WebTransport,
// and WebSocket over TLS). From PEM files it is read again whenever either
// file changes — a renewal writes new ones — at the next handshake or
// Status, so taking a renewed certificate needs no restart and drops no
// session. A renewal that cannot be loaded (a key that does not match, a
// file half written) keeps the certificate in use, and Status says why.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cur      *tls.Certificate // Leaf set
	seen     [2]fileStamp     // the files as last read, loaded or not
	err      error            // why the files as last read were not taken; nil if they were
	reloads  uint64
	failures uint64
}

// fileStamp tells a file's versions apart: a renewal changes its
// modification time, size, or both.
type fileStamp struct {
	mod  time.Time
	size int64
}

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
	if err := c.load(); err != nil {
		return nil, err
	}
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

// refresh loads the files if either changed since they were last read.
// The caller holds mu.
func (c *Certificate) refresh() {
	if c.certFile == "" {
		return
	}
	now, err := c.stamps()
	if err != nil || now == c.seen {
		return // a file missing for a moment (replaced) is looked at again next time
	}
	if err := c.load(); err != nil {
		c.failures++
		c.log.Error(fmt.Sprintf("browsers: the renewed certificate %s (key %s) cannot be used; still serving the one valid until %s. Fix: write a matching certificate and key", c.certFile, c.keyFile, c.cur.Leaf.NotAfter.UTC().Format(time.RFC3339)), "err", err)
		return
	}
	c.reloads++
	c.log.Info("browsers: renewed certificate taken", "file", c.certFile, "valid until", c.cur.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// load reads both files and takes them if they make a certificate,
// remembering the files as read either way. The caller holds mu.
func (c *Certificate) load() error {
	stamps, err := c.stamps()
	if err != nil {
		return err
	}
	c.seen = stamps
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err == nil {
		err = setLeaf(&cert)
	}
	if err != nil {
		c.err = fmt.Errorf("webedge: certificate %s, key %s: %w", c.certFile, c.keyFile, err)
		return c.err
	}
	c.cur, c.err = &cert, nil
	return nil
}

func (c *Certificate) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("webedge: certificate: %w", err)
		}
		s[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return s, nil
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
