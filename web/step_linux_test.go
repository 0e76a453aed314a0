package web

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/realtime"
)

// stepResult is one simulated player's end state in step.html.
type stepResult struct {
	DriftMs          float64 `json:"driftMs"`
	MinRate, MaxRate float64
	Seeks            int `json:"seeks"`
}

// TestChromiumKeepInStep runs keepInStep in Chromium against simulated
// media elements in virtual time (testdata/step.html drives keepInStep's
// clock and timer; each element's time advances with its playbackRate):
// one 400 ms behind the schedule must be within a frame (40 ms) after 4 s
// by rate alone, within 1 ± maxCorrection and never stopped; one 5 s
// behind must be brought there by one seek. How busy the machine is does
// not enter.
func TestChromiumKeepInStep(t *testing.T) {
	browser := chromium(t)
	realtime.Exclusive(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan map[string]stepResult, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "testdata/step.html") })
	mux.HandleFunc("GET /embargo.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "dist/embargo.js") })
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		var res map[string]stepResult
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if json.Unmarshal(b, &res) == nil {
			select {
			case results <- res:
			default:
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	logs, kill, _ := headless(t, browser, t.TempDir(), "http://"+ln.Addr().String()+"/")
	defer kill()
	var res map[string]stepResult
	select {
	case res = <-results:
	case <-time.After(60 * time.Second):
		t.Fatalf("no result from the page; chromium said:\n%s", tail(logs(), 4000))
	}
	b, f := res["behind"], res["far"]
	if math.Abs(b.DriftMs) > 40 || b.Seeks != 0 || b.MinRate < 0.75 || b.MaxRate > 1.25 {
		t.Errorf("400 ms behind: drift %.1f ms after 4 s, %d seeks, rate %.3f…%.3f; want ≤ 40 ms by rate alone within 0.75…1.25", b.DriftMs, b.Seeks, b.MinRate, b.MaxRate)
	}
	if math.Abs(f.DriftMs) > 40 || f.Seeks != 1 || f.MinRate <= 0 {
		t.Errorf("5 s behind: drift %.1f ms after 4 s, %d seeks, min rate %.3f; want ≤ 40 ms after one seek, never stopped", f.DriftMs, f.Seeks, f.MinRate)
	}
	fmt.Printf("RESULT browser-keep-in-step behind-400ms drift-after-4s-ms=%.1f rate=%.3f…%.3f far-5s drift-after-4s-ms=%.1f seeks=%d\n",
		b.DriftMs, b.MinRate, b.MaxRate, f.DriftMs, f.Seeks)
}
