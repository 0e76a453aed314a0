package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/syncbuf"
)

// TestPublishRecv runs the README's publishing example: an origin with a
// resource stream, an edge releasing it by unicast, a receiver configured
// from the session, and 'embargo publish' submitting a resource with a
// publisher certificate. The receiver prints the very bytes, with a
// non-negative lateness (one machine, one clock: never early).
func TestPublishRecv(t *testing.T) {
	realtime.Exclusive(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab := startOrigin(t, ctx, "-streams", "1", "-resource-streams", "100", "-period", "300ms", "-lead", "1s", "-present", "100ms")
	dir, certs, originAddr := t.TempDir(), lab.certs, lab.addr(0)
	originOut, originDone := lab.out, lab.done
	edgeOut, edgeDone, stopEdge := lab.edge(t, ctx, "-streams", "100", "-lead", "1s")
	recvOut, recvErr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	recvDone := make(chan int, 1)
	go func() {
		recvDone <- run(ctx, []string{"recv", "-session", "https://" + originAddr + "/v1/session", "-token-file", lab.tokenFile,
			"-ca", filepath.Join(certs, "ca.pem"), "-streams", "100", "-periods", "1", "-json", "-catch-up", "0"}, recvOut, recvErr)
	}()

	resource := []byte("odds: home 1.85, draw 3.40, away 4.10\n")
	file := filepath.Join(dir, "odds.txt")
	if err := os.WriteFile(file, resource, 0o600); err != nil {
		t.Fatal(err)
	}
	var pubOut syncbuf.Buffer
	if code := run(ctx, []string{"publish", "-origin", "https://" + originAddr, "-certs", filepath.Join(certs, "publisher"), "-stream", "100", "-file", file, "-in", "3s"}, &pubOut, &pubOut); code != 0 {
		t.Fatalf("publish: exit %d: %s", code, pubOut.String())
	}
	if !strings.Contains(pubOut.String(), "published 38 bytes as stream 100 period 0") {
		t.Errorf("publish said %q", pubOut.String())
	}
	// The same bytes for the same instant again: refused, and said why.
	var again syncbuf.Buffer
	line := strings.Fields(pubOut.String())
	at := line[len(line)-3]
	if code := run(ctx, []string{"publish", "-origin", "https://" + originAddr, "-certs", filepath.Join(certs, "publisher"), "-stream", "100", "-file", file, "-at", at}, &again, &again); code == 0 || !strings.Contains(again.String(), "409") {
		t.Errorf("duplicate: exit %d: %s", code, again.String())
	}

	select {
	case code := <-recvDone:
		if code != 0 {
			t.Fatalf("recv: exit %d: %s", code, recvErr.String())
		}
	case <-ctx.Done():
		t.Fatalf("recv did not finish: %s\nedge: %s\norigin: %s", recvErr.String(), edgeOut.String(), originOut.String())
	}
	var ev eventJSON
	if err := json.Unmarshal([]byte(strings.SplitN(recvOut.String(), "\n", 2)[0]), &ev); err != nil {
		t.Fatalf("recv printed %q: %v", recvOut.String(), err)
	}
	if got, _ := hex.DecodeString(ev.Resource); ev.Stream != 100 || string(got) != string(resource) || ev.LatenessNs < 0 {
		t.Fatalf("received stream %d resource %q lateness %v", ev.Stream, got, time.Duration(ev.LatenessNs))
	}
	stopEdge()
	<-edgeDone
	cancel()
	<-originDone
}
