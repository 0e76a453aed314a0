package webedge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"golang.org/x/time/rate"
)

// ServeWebTransport serves browsers over WebTransport (HTTP/3) on pc, any
// path, until ctx ends (then it returns nil) or it fails. A live
// RELEASE's first copy goes as one QUIC datagram — unreliable and
// unordered like UDP — and its second copy and every other datagram
// (ANNOUNCE shards, catch-up) as frames on the session's one
// unidirectional stream (ReadFrames), which QUIC delivers (Server.Send). tlsConf holds the
// edge's certificate: a real one in production, or SelfSigned for a
// page that pins it with serverCertificateHashes.
func (s *Server) ServeWebTransport(ctx context.Context, pc net.PacketConn, tlsConf *tls.Config) error {
	mux := http.NewServeMux()
	wt := &webtransport.Server{
		H3: &http3.Server{TLSConfig: http3.ConfigureTLSConfig(tlsConf), Handler: mux,
			// Between periods a session may carry nothing for longer than
			// QUIC's idle timeout (30 s): the edge's PINGs keep it. No
			// path MTU probes: nothing the edge sends needs more than
			// QUIC's minimum of 1,200 bytes a packet, and quic-go probes
			// when a connection next sends after a quiet spell — at the
			// release, where 3,000 sessions' probes and their answers
			// nearly tripled the time to the last RELEASE.
			QUICConfig: &quic.Config{KeepAlivePeriod: keepAlive, DisablePathMTUDiscovery: true},
			// A connection without a session (no request stream open)
			// is closed: the edge's PINGs would keep it forever.
			IdleTimeout: idleConn},
		CheckOrigin: s.checkOrigin,
	}
	webtransport.ConfigureHTTP3Server(wt.H3)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		cl, ok := s.admit(w, r)
		if !ok {
			return
		}
		sess, err := wt.Upgrade(w, r)
		if err != nil {
			s.refused.Add(1)
			return
		}
		s.run(sess.Context(), &wtTransport{s: sess}, cl)
	})
	// The QUIC transport is the edge's own, not the one wt.Serve would
	// make, for two admission hooks (s.verifySource, s.connContext).
	qconf := wt.H3.QUICConfig.Clone()
	qconf.EnableDatagrams, qconf.EnableStreamResetPartialDelivery = true, true // what WebTransport needs
	tr := &quic.Transport{Conn: pc, VerifySourceAddress: s.verifySource(), ConnContext: s.connContext}
	ln, err := tr.ListenEarly(wt.H3.TLSConfig, qconf)
	if err != nil {
		return fmt.Errorf("webedge: webtransport on %s: %w", pc.LocalAddr(), err)
	}
	done := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			qc, err := ln.Accept(ctx)
			if err != nil {
				done <- err
				return
			}
			wg.Go(func() { wt.ServeQUICConn(qc) })
		}
	}()
	select {
	case <-ctx.Done():
		wt.Close()
		ln.Close()
		<-done
		tr.Close()
		return nil
	case err := <-done:
		wt.Close()
		ln.Close()
		tr.Close()
		if ctx.Err() != nil { // Accept saw the end first
			return nil
		}
		return fmt.Errorf("webedge: webtransport on %s: %w", pc.LocalAddr(), err)
	}
}

// verifySource is the transport's VerifySourceAddress: true (a QUIC Retry,
// one round trip more for the browser) once more than RetryAbove
// handshakes a second come from addresses not yet proven. A flood of
// Initial packets from spoofed addresses then costs the edge a stateless
// Retry each, not a TLS handshake and a connection's state, and draws no
// more bytes than it sent.
func (s *Server) verifySource() func(net.Addr) bool {
	if s.cfg.RetryAbove < 0 {
		return func(net.Addr) bool { s.retries.Add(1); return true }
	}
	lim := rate.NewLimiter(rate.Limit(s.cfg.RetryAbove), s.cfg.RetryAbove)
	var loud bounded
	return func(net.Addr) bool {
		if lim.Allow() {
			return false
		}
		s.retries.Add(1)
		if n, ok := loud.note(time.Now()); ok {
			s.log.Warn(fmt.Sprintf("browsers: more than %d WebTransport handshakes a second from addresses not yet proven: each further one is asked to prove its address (QUIC Retry); a flood of spoofed Initials costs a Retry each", s.cfg.RetryAbove), "retries since the last line", n)
		}
		return true
	}
}

// connContext refuses a QUIC connection before its handshake when the
// session it would open would be refused — the edge full, or the address
// or prefix at its limit — or when the address or prefix holds as many
// QUIC connections as it may hold sessions and a few more on their way
// to one (as Listener for TCP); counted per Initial packet. A connection
// holds its place until quic-go ends its context (closed, or its
// handshake failed). A spoofed address cannot raise these counts: what
// an unproven address holds ends with its handshake.
func (s *Server) connContext(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	from := ipOf(ci.RemoteAddr)
	s.mu.Lock()
	full, crowded := len(s.conns) >= s.cfg.MaxConns, s.crowded(from)
	held := !full && crowded == "" && s.quic.hold(s, from, pendingSlack)
	s.mu.Unlock()
	if !held {
		s.refusedInitials.Add(1)
		s.noteRefused(crowded)
		return ctx, errors.New("refused: the edge is full, or this address holds its most sessions")
	}
	s.handshakes.Add(1)
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.quic.count(s, from, -1)
		s.mu.Unlock()
	})
	return ctx, nil
}

// checkOrigin admits a page of the endpoint's own host or one matching
// OriginPatterns (host patterns, as for WebSocket), and a client that
// sends no Origin (not a browser).
func (s *Server) checkOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, p := range s.cfg.OriginPatterns {
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// wtTransport: live RELEASEs as datagrams; everything else, in order,
// as frames on one unidirectional stream, opened at the first write and
// kept for the session. One stream per datagram would cost the edge a
// stream's setup and flow-control credit per shard per browser.
type wtTransport struct {
	s   *webtransport.Session
	str *webtransport.SendStream
	buf []byte // the frames of one write; only the session's writer touches str and buf

	// The reader's: watch starts the goroutines that set streamed and
	// cancel rctx when the browser opens a stream.
	watch    sync.Once
	rctx     context.Context
	streamed atomic.Bool
}

func (t *wtTransport) write(ctx context.Context, msgs [][]byte) error {
	if t.str == nil {
		str, err := t.s.OpenUniStreamSync(ctx)
		if err != nil {
			return err
		}
		t.str = str
	}
	if d, ok := ctx.Deadline(); ok {
		t.str.SetWriteDeadline(d)
	}
	t.buf = t.buf[:0]
	for _, m := range msgs {
		t.buf = appendFrame(t.buf, m)
	}
	_, err := t.str.Write(t.buf)
	return err
}

// datagram: a datagram the connection cannot send is lost, as on UDP;
// the edge sends copies.
func (t *wtTransport) datagram(m []byte) error { return t.s.SendDatagram(m) }

func (*wtTransport) datagrams() bool { return true }

// read returns the browser's next datagram. A stream the browser opens
// is bad input: the first read starts watching for one, which cancels
// every read after.
func (t *wtTransport) read(ctx context.Context) ([]byte, error) {
	t.watch.Do(func() {
		var cancel context.CancelFunc
		t.rctx, cancel = context.WithCancel(t.s.Context())
		opened := func(err error) {
			if err == nil {
				t.streamed.Store(true)
				cancel()
			}
		}
		go func() { _, err := t.s.AcceptStream(t.rctx); opened(err) }()
		go func() { _, err := t.s.AcceptUniStream(t.rctx); opened(err) }()
	})
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(t.rctx, stop)()
	b, err := t.s.ReceiveDatagram(ctx)
	if t.streamed.Load() {
		return nil, errBadInput
	}
	return b, err
}

func (t *wtTransport) reply(_ context.Context, m []byte) error { return t.s.SendDatagram(m) }

func (t *wtTransport) abort(reason string) { t.s.CloseWithError(1, reason) }

func (t *wtTransport) end(_ websocket.StatusCode, reason string) { t.s.CloseWithError(0, reason) }

// keepAlive is how often a quiet WebTransport session is PINGed.
const keepAlive = 10 * time.Second

// idleConn is how long a QUIC connection may carry no session.
const idleConn = 30 * time.Second

// MaxSelfSigned is the longest validity a browser accepts for a
// certificate pinned with serverCertificateHashes.
const MaxSelfSigned = 14 * 24 * time.Hour

// SelfSigned makes an ECDSA P-256 certificate for hosts valid from now
// for validity (at most MaxSelfSigned), and its SHA-256 hash: what a page
// passes as serverCertificateHashes to reach an edge without a CA.
func SelfSigned(hosts []string, now time.Time, validity time.Duration) (*tls.Config, [sha256.Size]byte, error) {
	var hash [sha256.Size]byte
	if validity <= 0 || validity > MaxSelfSigned {
		return nil, hash, fmt.Errorf("%w: self-signed validity %v, want > 0 and ≤ %v (browsers refuse longer)", ErrConfig, validity, MaxSelfSigned)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, hash, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, hash, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity - time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, hash, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, hash, errors.Join(errors.New("webedge: parse own certificate"), err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}}, sha256.Sum256(der), nil
}
