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
	// Of a detuned one: the least |rate − 1| set after the first, and
	// the least and most currentTime − the schedule over the run (ms).
	MinOff     float64 `json:"minOff"`
	MinDriftMs float64 `json:"minDriftMs"`
	MaxDriftMs float64 `json:"maxDriftMs"`
}

// TestChromiumKeepInStep runs keepInStep in Chromium against simulated
// media elements in virtual time (testdata/step.html drives keepInStep's
// clock and timer; each element's time advances with its playbackRate):
// one 400 ms behind the schedule must be within a frame (40 ms) after 4 s
// by rate alone, within 1 ± maxCorrection and never stopped; one 5 s
// behind must be brought there by one seek. Detuned (StepOptions.detune
// 0.006, keepInStep's defaults otherwise), one on the schedule, one 3 ms
// and one 12 ms behind (where the aim turns to catch up: the gap's
// correction would cancel the detune), for 8 s: the rate never within
// 0.3 % of 1 (Chromium's cadence lock is ±0.25 %), never seeking, the
// media never ahead of the schedule nor behind it by more than the
// detune's 12 ms and its start, on it again at the end of the 4th cycle,
// all within 1 ms of each other. How busy the machine is does not enter.
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
	// Behind by at most the detune's 12 ms plus the start's (and 1 ms).
	for _, c := range []struct {
		name    string
		d       stepResult
		startMs float64
	}{{"on the schedule", res["onTime"], 0}, {"3 ms behind", res["late"], 3}, {"12 ms behind", res["turned"], 12}} {
		d, least := c.d, -12-c.startMs-1
		if d.MinOff < 0.003 || d.Seeks != 0 || d.MaxDriftMs > 1 || d.MinDriftMs < least || math.Abs(d.DriftMs) > 1 {
			t.Errorf("detuned, %s: rate %.4f…%.4f, never within %.4f of 1, %d seeks, ahead of the schedule by %.2f…%.2f ms, %.2f ms after 8 s; want ≥ 0.003 from 1, no seek, %.0f…1 ms, within 1 ms after 8 s", c.name, d.MinRate, d.MaxRate, d.MinOff, d.Seeks, d.MinDriftMs, d.MaxDriftMs, d.DriftMs, least)
		}
	}
	for _, other := range []string{"late", "turned"} {
		if d := math.Abs(res["onTime"].DriftMs - res[other].DriftMs); d > 1 {
			t.Errorf("detuned players (%s) are %.2f ms apart after 8 s, want within 1", other, d)
		}
	}
	for _, name := range []string{"onTime", "turned"} {
		d := res[name]
		fmt.Printf("RESULT browser-keep-in-step-detuned start=%s rate=%.4f…%.4f least-off-1=%.4f drift-ms=%.2f…%.2f after-8s-ms=%.2f\n",
			name, d.MinRate, d.MaxRate, d.MinOff, d.MinDriftMs, d.MaxDriftMs, d.DriftMs)
	}
	fmt.Printf("RESULT browser-keep-in-step behind-400ms drift-after-4s-ms=%.1f rate=%.3f…%.3f far-5s drift-after-4s-ms=%.1f seeks=%d\n",
		b.DriftMs, b.MinRate, b.MaxRate, f.DriftMs, f.Seeks)
}
