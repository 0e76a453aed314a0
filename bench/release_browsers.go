package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/webtransport-go"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/webedge"
	"github.com/embargo-live/embargo/wire"
)

// This file holds both sides of the browser variants: the edge's webedge
// server, and subscribers that do what a page does (engine/webedge's
// messages into the device receiver), in Go.

// openBrowsers starts e's webedge server on loopback for e's variant and
// sets the address its subscribers dial.
func (e *edgeSender) openBrowsers(stream uint32) (edge.Sender, error) {
	// Every subscriber comes from 127.0.0.1: one address may hold them all.
	web, err := webedge.New(webedge.Config{Streams: []uint32{stream}, Clock: e.cfg.Clock, MaxConns: e.cfg.Subscribers, MaxPerAddress: e.cfg.Subscribers,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	e.web = web
	ctx, cancel := context.WithCancel(context.Background())
	if e.cfg.Variant == BrowserWebSocket {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cancel()
			return nil, err
		}
		srv := &http.Server{Handler: web.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		e.closers = append(e.closers, func() error { web.CloseAll(); cancel(); return srv.Close() })
		e.s.Addr = "ws://" + ln.Addr().String() + "/"
		return web, nil
	}
	tlsConf, hash, err := webedge.SelfSigned([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		cancel()
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- web.ServeWebTransport(ctx, pc, tlsConf) }()
	e.closers = append(e.closers, func() error { cancel(); err := <-done; pc.Close(); return err })
	e.s.Addr, e.s.CertHash = "https://"+pc.LocalAddr().String()+"/", hash[:]
	return web, nil
}

// browsersConnected waits until web holds n sessions.
func browsersConnected(ctx context.Context, web *webedge.Server, n int) error {
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for web.Stats().Conns < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d browsers connected", web.Stats().Conns, n)
		case <-tick.C:
		}
	}
	return nil
}

// dialBrowser connects one browser subscriber to spec's edge and feeds
// what arrives to r until ctx ends. A WebSocket goes over a connection
// from dial; a WebTransport session over a stampedPacketConn, which it
// sets *src to before anything is read.
func dialBrowser(ctx context.Context, spec *subscriberSpec, r *receiver.Receiver, dial func(context.Context, string) (net.Conn, error), src *stamper, opened func(func())) error {
	if spec.Variant == BrowserWebSocket {
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}}
		c, _, err := websocket.Dial(ctx, spec.Addr, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			return err
		}
		c.SetReadLimit(wire.MaxDatagram)
		opened(func() { c.CloseNow() })
		go func() {
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					return
				}
				r.Handle(b, time.Time{}, browserAddr)
			}
		}()
		return nil
	}
	// The edge's self-signed certificate, pinned by its hash as a page
	// pins it with serverCertificateHashes.
	pin := &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("bench: the edge sent no certificate")
		}
		if h := sha256.Sum256(raw[0]); !bytes.Equal(h[:], spec.CertHash) {
			return errors.New("bench: the edge's certificate is not the pinned one")
		}
		return nil
	}}
	tr := &webtransport.Transport{TLSClientConfig: pin, DialAddr: func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, err
		}
		pc, err := listenStamped()
		if err != nil {
			return nil, err
		}
		c, err := quic.DialEarly(ctx, pc, ua, tlsConf, conf)
		if err != nil {
			pc.Close()
			return nil, err
		}
		*src = pc
		context.AfterFunc(c.Context(), func() { pc.Close() })
		return c, nil
	}}
	// A QUIC server refuses connections while its accept queue is full (a
	// burst of handshakes); a page reconnects, and so does this.
	var sess *webtransport.Session
	var err error
	for try := 0; ; try++ {
		_, sess, err = tr.Dial(ctx, spec.Addr, nil)
		if err == nil || try == 50 || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		tr.Close()
		return err
	}
	opened(func() { sess.CloseWithError(0, ""); tr.Close() })
	go func() {
		for {
			b, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			r.Handle(b, time.Time{}, browserAddr)
		}
	}()
	go func() {
		for {
			str, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			// The session's stream of frames (engine/webedge): one per
			// session, but a page reads any it is sent.
			go webedge.ReadFrames(str, func(b []byte) { r.Handle(b, time.Time{}, browserAddr) })
		}
	}()
	return nil
}

// browserAddr is the From of a browser's datagrams: none.
var browserAddr netip.AddrPort
