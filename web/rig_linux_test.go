package web

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/webedge"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// rig is what the browser tests run against: an origin rotating keys on
// stream 1, an edge whose only sender is a webedge answering WebSocket
// and WebTransport sessions (tokens required), and an HTTP server on
// loopback for the test's pages.
type rig struct {
	web  *webedge.Server
	mux  *http.ServeMux
	base string // the page server, http://127.0.0.1:port
	// options are the web library's Options for the pages: edges (by
	// transport, "ws" and "wt"), serverCertificateHashes, originPub,
	// master, streams, token.
	options map[string]any

	mu     sync.Mutex
	issued map[uint64][]seal.ContentKey // by period
}

// newRig starts a rig until ctx ends (and the test's cleanups have run).
// browserClock is the clock the edge answers browsers' time requests
// with; onIssued, if not nil, runs for each issued period after the
// edge has it, on the rotation's goroutine.
func newRig(t *testing.T, ctx context.Context, sched origin.Schedule, keys int, browserClock ptp.Clock, onIssued func(origin.Issued)) *rig {
	t.Helper()
	dir := t.TempDir()
	wasm := buildWasm(t, dir)
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	wasmExec := filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js")
	clock, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, signer, _ := ed25519.GenerateKey(rand.Reader)
	master := make([]byte, seal.MasterKeyLen)
	rand.Read(master)
	org, err := origin.New(signer, master)
	if err != nil {
		t.Fatal(err)
	}
	// The page is served from another port than the WebTransport endpoint.
	// The edge requires subscription tokens: every page passes its own
	// through the web library (Options.token).
	web, err := webedge.New(webedge.Config{Streams: []uint32{1}, Clock: browserClock, OriginPatterns: []string{"127.0.0.1:*"},
		Tokens: seal.NewKeyRing(org.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	now, err := browserClock.Now()
	if err != nil {
		t.Fatal(err)
	}
	token := seal.SignToken(signer, &wire.Token{NotAfter: now.Latest + int64(10*time.Minute)})
	e, err := edge.New(edge.Config{ID: 1, Clock: clock, Trusted: seal.NewKeyRing(org.PublicKey()), Senders: []edge.Sender{web}, Lead: sched.Lead})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{web: web, mux: http.NewServeMux(), issued: map[uint64][]seal.ContentKey{}}
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg  sync.WaitGroup
		pc  net.PacketConn
		srv *http.Server
	)
	t.Cleanup(func() {
		if srv != nil {
			srv.Close()
		}
		cancel()
		web.CloseAll()
		wg.Wait()
		if pc != nil {
			pc.Close() // after the WebTransport server stops
		}
	})
	rot := &origin.Rotation{Origin: org, Schedule: sched, Streams: []uint32{1}, Keys: keys, Clock: clock}
	wg.Go(func() {
		rot.Run(ctx, func(is origin.Issued) error {
			r.mu.Lock()
			r.issued[is.Bundle.Period] = is.Keys
			r.mu.Unlock()
			if err := e.Add(is.Bundle); err != nil {
				return err
			}
			if onIssued != nil {
				onIssued(is)
			}
			return nil
		})
	})
	wg.Go(func() { e.Run(ctx) })

	pub, _ := seal.EncodePublicKey(org.PublicKey())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.base = "http://" + ln.Addr().String()
	tlsConf, certHash, err := webedge.SelfSigned([]string{"127.0.0.1"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err = net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := web.ServeWebTransport(ctx, pc, tlsConf); err != nil {
			t.Errorf("webtransport: %v", err)
		}
	})
	r.options = map[string]any{
		"edges":                   map[string]string{"ws": "ws://" + ln.Addr().String() + "/ws", "wt": "https://" + pc.LocalAddr().String() + "/"},
		"serverCertificateHashes": []string{hex.EncodeToString(certHash[:])}, "originPub": string(pub),
		"master": hex.EncodeToString(master), "streams": []uint32{1},
		"token": base64.StdEncoding.EncodeToString(token),
	}
	r.mux.HandleFunc("GET /embargo.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "dist/embargo.js") })
	r.mux.HandleFunc("GET /wasm_exec.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, wasmExec) })
	r.mux.HandleFunc("GET /embargo.wasm", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/wasm")
		http.ServeFile(w, r, wasm)
	})
	r.mux.HandleFunc("GET /players.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "testdata/players.html") })
	r.mux.Handle("GET /ws", web.Handler())
	srv = &http.Server{Handler: r.mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return r
}

// keys returns the origin's keys of a period.
func (r *rig) keys(period uint64) ([]seal.ContentKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.issued[period]
	return k, ok
}

// handleResults serves POST /result on mux: each page's JSON result into
// results (dropped when full), one that is not JSON as setError makes it.
func handleResults[T any](mux *http.ServeMux, results chan<- T, setError func(*T, string)) {
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		var res T
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := json.Unmarshal(b, &res); err != nil {
			setError(&res, fmt.Sprintf("result %q: %v", b, err))
		}
		select {
		case results <- res:
		default:
		}
	})
}
