package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
)

// TestOriginEdgeRecv runs the three roles the way an operator would, with
// lab certificates: the origin service rotates keys, an edge fetches
// bundles over mutual TLS and releases them by unicast, and a receiver
// configured from the origin's session URL (with a licence token) gets
// every period — and serves its keys to a player through the ClearKey
// licence proxy.
func TestOriginEdgeRecv(t *testing.T) {
	realtime.Exclusive(t)
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	var out lockedBuffer
	if code := run(context.Background(), []string{"certs", "-dir", certs, "-hosts", "127.0.0.1"}, &out, &out); code != 0 {
		t.Fatalf("certs: %s", out.String())
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("t0ken player\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := 44000 + time.Now().UnixNano()%5000
	originAddr := fmt.Sprintf("127.0.0.1:%d", port)
	edgeAddr := fmt.Sprintf("127.0.0.1:%d", port+1)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", port+2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	originOut := &lockedBuffer{}
	originDone := make(chan int, 1)
	go func() {
		originDone <- run(ctx, []string{"origin", "-state", filepath.Join(dir, "state"), "-certs", certs, "-listen", originAddr,
			"-period", "300ms", "-lead", "600ms", "-present", "300ms", "-tokens", tokens, "-session-edge", edgeAddr,
			"-assume-synced", "1ms", "-log", "warn"}, originOut, originOut)
	}()
	edgeCtx, stopEdge := context.WithCancel(ctx)
	edgeOut := &lockedBuffer{}
	edgeDone := make(chan int, 1)
	wait.For(t, 5*time.Second, "origin", func() bool { return strings.Contains(originOut.String(), "serving") })
	go func() {
		edgeDone <- run(edgeCtx, []string{"edge", "-origin", "https://" + originAddr, "-certs", certs, "-unicast", edgeAddr,
			"-assume-synced", "1ms", "-log", "warn"}, edgeOut, edgeOut)
	}()
	recvOut, recvErr := &lockedBuffer{}, &lockedBuffer{}
	recvDone := make(chan int, 1)
	go func() {
		recvDone <- run(ctx, []string{"recv", "-session", "https://" + originAddr + "/v1/session", "-token", "t0ken",
			"-ca", filepath.Join(certs, "ca.pem"), "-licence-proxy", proxyAddr, "-licence-proxy-origin", "https://player.example", "-periods", "3", "-json", "-show-keys", "-catch-up", "0"}, recvOut, recvErr)
	}()
	// Once a period is out, an unmodified player asks the licence proxy
	// for its first key, ClearKey style.
	wait.For(t, 20*time.Second, "a period", func() bool { return strings.Contains(recvOut.String(), "kids") })
	var ev eventJSON
	first := strings.SplitN(recvOut.String(), "\n", 2)[0]
	if err := json.Unmarshal([]byte(first), &ev); err != nil || len(ev.KIDs) != 2 || ev.LatenessNs < 0 {
		t.Fatalf("event %s: %v", first, err)
	}
	kid, _ := hex.DecodeString(ev.KIDs[0])
	key, _ := hex.DecodeString(ev.Keys[0])
	body, _ := clearkey.MarshalRequest([][16]byte{[16]byte(kid)}, clearkey.TypeTemporary)
	req, _ := http.NewRequest(http.MethodPost, "http://"+proxyAddr+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://player.example") // the page -licence-proxy-origin allows
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lic, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keys, err := clearkey.ParseLicence(lic)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Key[:], key) || resp.Header.Get("Access-Control-Allow-Origin") != "https://player.example" {
		t.Fatalf("licence %s (%v), want key %x with CORS", lic, err, key)
	}

	var code int
	select {
	case code = <-recvDone:
	case <-ctx.Done():
		t.Fatalf("recv did not finish: %s\nedge: %s\norigin: %s", recvErr.String(), edgeOut.String(), originOut.String())
	}
	if code != 0 {
		t.Fatalf("recv: exit %d: %s", code, recvErr.String())
	}
	if n := strings.Count(recvOut.String(), "kids"); n != 3 {
		t.Fatalf("recv printed %d periods:\n%s", n, recvOut.String())
	}

	stopEdge()
	if c := <-edgeDone; c != 0 {
		t.Errorf("edge: exit %d: %s", c, edgeOut.String())
	}
	cancel()
	if c := <-originDone; c != 0 {
		t.Errorf("origin: exit %d: %s", c, originOut.String())
	}
}
