package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/syncbuf"
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab := startOrigin(t, ctx, "-period", "300ms", "-lead", "1s", "-present", "300ms", "-log", "debug")
	certs, originAddr, proxyAddr := lab.certs, lab.addr(0), lab.addr(2)
	originOut, originDone := lab.out, lab.done
	edgeOut, edgeDone, stopEdge := lab.edge(t, ctx, "-log", "debug", "-log-format", "json")
	recvOut, recvErr := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	recvDone := make(chan int, 1)
	go func() {
		recvDone <- run(ctx, []string{"recv", "-session", "https://" + originAddr + "/v1/session", "-token-file", lab.tokenFile, "-log", "debug",
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
	// Every line every role wrote, at debug level, is free of the lab's
	// secrets (recv's stdout shows content keys because -show-keys asked).
	assertNoSecrets(t, lab.state, certs, labToken, map[string]string{
		"origin's output": originOut.String(), "edge's output": edgeOut.String(), "recv's log": recvErr.String()})
}

// labToken is the licence token of an originLab.
const labToken = "lab-licence-token-9f6c2e1d"

// originLab is an 'embargo origin' run for a test, with lab certificates
// and labToken in its tokens file and, alone, in tokenFile.
type originLab struct {
	certs, state, tokenFile string
	ports                   []int // addr(0) is the origin's; the others are for the test's other roles
	out                     *syncbuf.Buffer
	done                    chan int
}

func (l *originLab) addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", l.ports[i]) }

// startOrigin makes the certificates and starts the origin until ctx
// ends, on free loopback ports (addr(0) to addr(3)), announcing addr(1)
// as the session's edge,
// with args added to its flags.
func startOrigin(t *testing.T, ctx context.Context, args ...string) *originLab {
	dir, certs := labCerts(t)
	l := &originLab{certs: certs, state: filepath.Join(dir, "state"), tokenFile: filepath.Join(dir, "token"), ports: freeport.Get(t, 4)}
	tokens := filepath.Join(dir, "tokens")
	if err := errors.Join(os.WriteFile(tokens, []byte(labToken+" player\n"), 0o600), os.WriteFile(l.tokenFile, []byte(labToken+"\n"), 0o600)); err != nil {
		t.Fatal(err)
	}
	auth := []string{"-tokens", tokens}
	if slices.Contains(args, "-jwks") {
		auth = nil // per-viewer entitlement instead of the shared token
	}
	args = append(append([]string{"origin", "-state", l.state, "-certs", filepath.Join(l.certs, "origin"), "-listen", l.addr(0),
		"-session-edge", l.addr(1), "-assume-synced", "1ms", "-log", "warn"}, auth...), args...)
	l.out, l.done = background(ctx, args...)
	wait.For(t, 5*time.Second, "origin", func() bool { return strings.Contains(l.out.String(), "serving") })
	return l
}

// edge starts 'embargo edge' fetching from the origin and releasing by
// unicast on addr(1), with args added, until ctx ends or stop is called.
func (l *originLab) edge(t *testing.T, ctx context.Context, args ...string) (out *syncbuf.Buffer, done chan int, stop func()) {
	ctx, stop = context.WithCancel(ctx)
	args = append([]string{"edge", "-origin", "https://" + l.addr(0), "-certs", filepath.Join(l.certs, "edge"), "-unicast", l.addr(1),
		"-assume-synced", "1ms", "-log", "warn"}, args...)
	out, done = background(ctx, args...)
	return out, done, stop
}

// TestEdgeWaitsForOrigin: an edge whose origin is down at start keeps
// running, not ready, and says why on /readyz; it keeps the default
// multicast group beside -unicast; a second edge on its unicast address
// fails with "address already in use"; once the origin is up, bundles
// arrive and the edge becomes ready. Before, the edge exited at once, a
// second edge shared the address silently, and -unicast dropped the group.
func TestEdgeWaitsForOrigin(t *testing.T) {
	realtime.Exclusive(t)
	dir, certs := labCerts(t)
	ports := freeport.Get(t, 4)
	originAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	edgeAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	originMetrics := fmt.Sprintf("127.0.0.1:%d", ports[3])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	edgeOut := &syncbuf.Buffer{}
	edgeDone := make(chan int, 1)
	go func() {
		edgeDone <- run(ctx, []string{"edge", "-origin", "https://" + originAddr, "-certs", filepath.Join(certs, "edge"), "-unicast", edgeAddr,
			"-metrics", metricsAddr, "-assume-synced", "1ms"}, edgeOut, edgeOut)
	}()
	readyz := func() (int, string) { return httpGet("http://" + metricsAddr + "/readyz") }
	wait.For(t, time.Minute, "the edge to say it is not ready", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "bundles: FAIL: stream 1: 0 periods ahead")
	})
	wait.For(t, time.Minute, "a retry of the origin", func() bool {
		return strings.Contains(edgeOut.String(), "origin not reachable; retrying")
	})
	select {
	case code := <-edgeDone:
		t.Fatalf("edge exited (%d) with the origin down:\n%s", code, edgeOut.String())
	default:
	}
	if !strings.Contains(edgeOut.String(), "msg=sending group=") || !strings.Contains(edgeOut.String(), "unicast: serving") {
		t.Errorf("-unicast without -multicast=false: not sending to the default group as well:\n%s", edgeOut.String())
	}

	second := &syncbuf.Buffer{}
	if code := run(ctx, []string{"edge", "-keys", keysDir(t), "-unicast", edgeAddr, "-assume-synced", "1ms"}, second, second); code != 1 ||
		!strings.Contains(second.String(), "address already in use") {
		t.Errorf("a second edge on %s: exit %d:\n%s", edgeAddr, code, second.String())
	}

	originOut := &syncbuf.Buffer{}
	originDone := make(chan int, 1)
	go func() {
		originDone <- run(ctx, []string{"origin", "-state", filepath.Join(dir, "state"), "-certs", filepath.Join(certs, "origin"), "-listen", originAddr,
			"-period", "300ms", "-lead", "1s", "-present", "300ms", "-assume-synced", "1ms", "-log", "warn", "-metrics", originMetrics}, originOut, originOut)
	}()
	wait.For(t, time.Minute, "the edge to be ready once the origin is up", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	// Every role exports its own counters, its build and the Go runtime.
	_, em := httpGet("http://" + metricsAddr + "/metrics")
	_, om := httpGet("http://" + originMetrics + "/metrics")
	for _, want := range []string{`embargo_build_info{goversion=`, `role="edge"`, "go_goroutines", "process_cpu_seconds_total",
		`embargo_edge_bundles_ahead{stream="1"}`, "embargo_edge_fetch_errors_total", "embargo_edge_seconds_since_fetch", "embargo_edge_failing_senders 0"} {
		if !strings.Contains(em, want) {
			t.Errorf("edge /metrics lacks %q", want)
		}
	}
	for _, want := range []string{`role="origin"`, "go_goroutines", "embargo_origin_periods_issued_total", `embargo_origin_bundle_fetches_total{edge="`,
		"embargo_origin_licences_total 0", `embargo_origin_requests_total{outcome="bundles"}`} {
		if !strings.Contains(om, want) {
			t.Errorf("origin /metrics lacks %q:\n%s", want, om)
		}
	}
	cancel()
	<-edgeDone
	<-originDone
	if code, body := readyz(); code != 0 {
		t.Errorf("metrics still served after the edge stopped: %d %s", code, body)
	}
}

// httpGet returns the status and body of a GET of url (0 and the error
// when it fails).
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// labCerts makes lab certificates (embargo certs) in a fresh directory and
// returns the directory and the certificates' subdirectory.
func labCerts(t *testing.T) (dir, certs string) {
	t.Helper()
	dir = t.TempDir()
	certs = filepath.Join(dir, "certs")
	var out syncbuf.Buffer
	if code := run(context.Background(), []string{"certs", "-dir", certs, "-hosts", "127.0.0.1"}, &out, &out); code != 0 {
		t.Fatalf("certs: %s", out.String())
	}
	return dir, certs
}
