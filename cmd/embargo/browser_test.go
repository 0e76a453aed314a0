package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"

	"github.com/embargo-live/embargo/engine/webedge"
	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/wire"
)

// TestEdgeBrowser runs `embargo edge -browser` with browsers only: a
// WebSocket client gets the period's ANNOUNCE shards and its RELEASE, each
// message one datagram.
func TestEdgeBrowser(t *testing.T) {
	realtime.Exclusive(t)
	dir := keysDir(t)
	ports := freeport.Get(t, 2)
	addr, wtAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, done := background(ctx, "edge", "-keys", dir, "-multicast=false", "-browser", addr, "-browser-wt", wtAddr,
		"-period", "300ms", "-lead", "600ms", "-present", "100ms", "-assume-synced", "1ms")
	var c *websocket.Conn
	var err error
	for c == nil {
		c, _, err = websocket.Dial(ctx, "ws://"+addr+"/", nil)
		if err != nil {
			select {
			case code := <-done:
				t.Fatalf("edge exited %d before serving browsers:\n%s", code, out.String())
			case <-ctx.Done():
				t.Fatalf("no browser endpoint: %v\n%s", err, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	defer c.CloseNow()
	c.SetReadLimit(wire.DefaultMaxDatagram)
	got := map[wire.Type]int{}
	for got[wire.TypeRelease] == 0 || got[wire.TypeAnnounce] == 0 {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read after %v: %v\n%s", got, err, out.String())
		}
		h, err := wire.Peek(b)
		if typ != websocket.MessageBinary || err != nil {
			t.Fatalf("message %v %x: not a datagram: %v", typ, b, err)
		}
		got[h.Type]++
	}
	// WebTransport: the shards come as frames on the session's stream.
	tr := &webtransport.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the edge's self-signed certificate
	defer tr.Close()
	_, sess, err := tr.Dial(ctx, "https://"+wtAddr+"/", nil)
	if err != nil {
		t.Fatalf("webtransport: %v\n%s", err, out.String())
	}
	str, err := sess.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 64)
	go webedge.ReadFrames(str, func(b []byte) {
		select {
		case frames <- b:
		default:
		}
	})
	select {
	case b := <-frames:
		if h, err := wire.Peek(b); err != nil || h.Type != wire.TypeAnnounce {
			t.Fatalf("webtransport frame %x: not an ANNOUNCE datagram: %v", b, err)
		}
	case <-ctx.Done():
		t.Fatalf("no frame on the webtransport stream\n%s", out.String())
	}
	cancel()
	<-done
	if !bytes.Contains([]byte(out.String()), []byte("sha-256")) {
		t.Errorf("the edge did not log its self-signed certificate's hash:\n%s", out.String())
	}
	if !bytes.Contains([]byte(out.String()), []byte("browsers")) {
		t.Errorf("the edge did not say where browsers connect:\n%s", out.String())
	}
}

// With -require-tokens, the edge refuses a browser without a subscription
// token (403), as it refuses such a unicast subscriber.
func TestEdgeBrowserTokens(t *testing.T) {
	realtime.Exclusive(t)
	dir := keysDir(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.One(t))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, done := background(ctx, "edge", "-keys", dir, "-multicast=false", "-browser", addr, "-require-tokens",
		"-period", "300ms", "-lead", "600ms", "-present", "100ms", "-assume-synced", "1ms")
	defer func() { cancel(); <-done }()
	for {
		_, rsp, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
		if err == nil {
			t.Fatal("a browser without a token was admitted")
		}
		if rsp != nil {
			if rsp.StatusCode != http.StatusForbidden {
				t.Fatalf("no token: %d, want 403", rsp.StatusCode)
			}
			return
		}
		select {
		case code := <-done:
			done <- code // for the deferred wait
			t.Fatalf("edge exited %d before serving browsers:\n%s", code, out.String())
		case <-ctx.Done():
			t.Fatalf("no browser endpoint: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestEdgeBrowserCertificate: with -browser-cert and -browser-tls,
// WebSocket is served over TLS (wss://) and WebTransport with that
// certificate, readiness names it,
// and a renewal written over the files is served to the next browser with
// the edge still running.
func TestEdgeBrowserCertificate(t *testing.T) {
	realtime.Exclusive(t)
	dir := keysDir(t)
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var certs [2]*pki.Cert
	for i := range certs {
		if certs[i], err = ca.Server(fmt.Sprintf("edge %d", i), []string{"127.0.0.1"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "browser.pem"), filepath.Join(certDir, "browser.key")
	install := func(i int) {
		t.Helper()
		if err := certs[i].Write(certDir, "browser"); err != nil {
			t.Fatal(err)
		}
	}
	install(0)
	// A client that trusts one of the two certificates alone: it connects
	// only to an edge serving that one.
	trusting := func(i int) *tls.Config {
		pool := x509.NewCertPool()
		pool.AddCert(certs[i].Cert)
		return &tls.Config{RootCAs: pool}
	}
	ports := freeport.Get(t, 3)
	addr, wtAddr, metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, done := background(ctx, "edge", "-keys", dir, "-multicast=false", "-browser", addr, "-browser-wt", wtAddr,
		"-browser-cert", certFile+","+keyFile, "-browser-tls", "-metrics", metricsAddr, "-assume-synced", "1ms")
	wss := func(i int) error {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: trusting(i)}}
		c, _, err := websocket.Dial(ctx, "wss://"+addr+"/", &websocket.DialOptions{HTTPClient: hc})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	wait.For(t, 20*time.Second, "the edge to serve wss://", func() bool {
		select {
		case code := <-done:
			t.Fatalf("edge exited %d:\n%s", code, out.String())
		default:
		}
		return wss(0) == nil
	})
	tr := &webtransport.Transport{TLSClientConfig: trusting(0)}
	defer tr.Close()
	if _, sess, err := tr.Dial(ctx, "https://"+wtAddr+"/", nil); err != nil {
		t.Fatalf("webtransport with the certificate: %v\n%s", err, out.String())
	} else {
		sess.CloseWithError(0, "")
	}
	if code, body := httpGet("http://" + metricsAddr + "/readyz"); code != http.StatusOK || !strings.Contains(body, "browsers-certificate") || !strings.Contains(body, "valid until") {
		t.Fatalf("/readyz %d:\n%s", code, body)
	}

	install(1)
	// The edge looks at the files at most once a second.
	wait.For(t, 20*time.Second, "a browser trusting only the renewed certificate to connect", func() bool { return wss(1) == nil })
	if err := wss(0); err == nil {
		t.Fatal("after the renewal, the edge still served the old certificate")
	}
	tr1 := &webtransport.Transport{TLSClientConfig: trusting(1)}
	defer tr1.Close()
	if _, sess, err := tr1.Dial(ctx, "https://"+wtAddr+"/", nil); err != nil {
		t.Fatalf("webtransport after the renewal: %v", err)
	} else {
		sess.CloseWithError(0, "")
	}
	if _, body := httpGet("http://" + metricsAddr + "/metrics"); !strings.Contains(body, "embargo_browsers_certificate_reloads_total 1") ||
		!strings.Contains(body, fmt.Sprintf("embargo_browsers_certificate_not_after_seconds %g", float64(certs[1].Cert.NotAfter.Unix()))) {
		t.Errorf("/metrics after the renewal:\n%s", grepLines(body, "certificate"))
	}
	cancel()
	<-done
	if !strings.Contains(out.String(), "wss://") || !strings.Contains(out.String(), "renewed certificate taken") {
		t.Errorf("the edge did not say it serves wss:// and took the renewal:\n%s", out.String())
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			b.WriteString(l)
		}
	}
	return b.String()
}
