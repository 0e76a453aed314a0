package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"

	"github.com/embargo-live/embargo/engine/webedge"
	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/realtime"
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
	var out lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"edge", "-keys", dir, "-multicast=false", "-browser", addr, "-browser-wt", wtAddr,
			"-period", "300ms", "-lead", "600ms", "-present", "100ms", "-assume-synced", "1ms"}, &out, &out)
	}()
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
	var out lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"edge", "-keys", dir, "-multicast=false", "-browser", addr, "-require-tokens",
			"-period", "300ms", "-lead", "600ms", "-present", "100ms", "-assume-synced", "1ms"}, &out, &out)
	}()
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
