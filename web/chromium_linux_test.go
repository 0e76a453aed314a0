package web

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
)

// chromium finds Debian's chromium (or another Chromium-based browser).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium: install Debian's chromium (.ci/run does, as root) to run the browser test")
	return ""
}

// buildWasm builds cmd/embargo-wasm into dir and returns its path.
func buildWasm(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "embargo.wasm")
	cmd := exec.Command("go", "build", "-o", out, "../cmd/embargo-wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build embargo.wasm: %v\n%s", err, b)
	}
	return out
}

// pageResult is what the test page posts.
type pageResult struct {
	Error     string `json:"error"`
	Transport string `json:"transport"`
	Periods   []struct {
		Period struct {
			Stream       uint32  `json:"stream"`
			Period       uint64  `json:"period"`
			ReleaseAtUTC float64 `json:"releaseAtUTC"`
			PresentAtUTC float64 `json:"presentAtUTC"`
			OpenedUTC    float64 `json:"openedUTC"`
			CatchUp      bool    `json:"catchUp"`
			Keys         []struct {
				KID string `json:"kid"`
				Key string `json:"key"`
			} `json:"keys"`
		} `json:"period"`
		GotAt         float64  `json:"gotAt"`
		Statuses      []string `json:"statuses"`
		PresentLateMs *float64 `json:"presentLateMs"`
		// PresentedPageMs is the page's own clock at the present callback,
		// EchoesAtPresent the time echoes its receiver had taken then.
		PresentedPageMs *float64 `json:"presentedPageMs"`
		EchoesAtPresent int      `json:"echoesAtPresent"`
	} `json:"periods"`
	Stats json.RawMessage `json:"stats"`
	// Clock is the page's clock measured against the edge's
	// (Receiver.clock).
	Clock struct {
		OffsetMs float64 `json:"offsetMs"`
		RTTMs    float64 `json:"rttMs"`
		Samples  int     `json:"samples"`
	} `json:"clock"`
}

// browserLag is how far the edge's clock for browsers is behind the
// pages' in TestChromium.
const browserLag = time.Second

// TestChromium runs the page in headless Chromium against an edge with an
// embedded origin: the page gets every period's keys, identical to the
// origin's, never before releaseAt by the host's clock (the page's, corrected by its measured offset), usable by
// Chromium's ClearKey CDM; and its present callback runs at presentAt.
func TestChromium(t *testing.T) {
	browser := chromium(t)
	realtime.Exclusive(t)
	dir := t.TempDir()

	const (
		want    = 5 // live periods each page must present
		perKind = 4 // pages over each transport, each its own receiver and connection
		players = 2 * perKind
	)
	sched := origin.Schedule{Period: 500 * time.Millisecond, Lead: time.Second, PresentDelay: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// The clock the edge answers browsers' time requests with reads
	// browserLag behind the host's (the pages'): a page must present by
	// it, browserLag after presentAt by its own clock. (The edge releases
	// by the host's clock; catch-up by the lagging one only gets later.)
	browserClock := ptp.NewSim(ptp.WithOffset(-browserLag), ptp.WithUncertainty(time.Millisecond, 0))
	rg := newRig(t, ctx, sched, 2, browserClock, nil)
	web := rg.web
	results := make(chan pageResult, players)
	rg.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "testdata/page.html") })
	rg.mux.HandleFunc("GET /options.json", func(w http.ResponseWriter, r *http.Request) {
		o := maps.Clone(rg.options)
		o["want"] = want
		json.NewEncoder(w).Encode(o)
	})
	handleResults(rg.mux, results, func(r *pageResult, err string) { r.Error = err })
	base := rg.base

	// Headless Chromium opens one target ("Multiple targets are not
	// supported in headless mode"): the players are iframes of one page.
	logs, kill, _ := headless(t, browser, dir, fmt.Sprintf("%s/players.html?ws=%d&wt=%d", base, perKind, perKind))
	defer kill()

	var all []pageResult
	for len(all) < players {
		select {
		case res := <-results:
			if res.Error != "" {
				t.Fatalf("page: %s", res.Error)
			}
			all = append(all, res)
		case <-ctx.Done():
			kill()
			t.Fatalf("%d of %d pages posted a result in time; chromium said:\n%s", len(all), players, tail(logs(), 4000))
		}
	}
	var late []float64
	early := map[string][]float64{} // by transport
	// presented[period] are the players' present callbacks (ms after presentAt).
	presented := map[uint64][]float64{}
	var offsets []float64
	for _, res := range all {
		// The measured offset is within half the round trip of
		// −browserLag, give or take how far Chromium's
		// performance.timeOrigin is from the system clock (it maps a
		// monotonic clock fixed at start: 3.8 ms seen; 20 ms allowed).
		lag := -float64(browserLag) / float64(time.Millisecond)
		if c := res.Clock; c.Samples == 0 || math.Abs(c.OffsetMs-lag) > c.RTTMs/2+20 {
			t.Errorf("%s page: clock offset %.3f ms from %d echoes (round trip %.3f ms), want within half the round trip of %.0f", res.Transport, c.OffsetMs, c.Samples, c.RTTMs, lag)
		}
		// Presented by the edge's time: once measured, never before
		// presentAt + browserLag − 100 ms on the page's own clock (a page
		// that kept its own would present near presentAt).
		for _, g := range res.Periods {
			if !g.Period.CatchUp && g.PresentedPageMs != nil && g.EchoesAtPresent > 0 && *g.PresentedPageMs < g.Period.PresentAtUTC-lag-100 {
				t.Errorf("%s page, period %d: presented %.1f ms after presentAt by its own clock, before the edge's presentAt (%.0f ms later)",
					res.Transport, g.Period.Period, *g.PresentedPageMs-g.Period.PresentAtUTC, -lag)
			}
		}
		offsets = append(offsets, res.Clock.OffsetMs)
		// The page's clock to the host's (the edge's without its lag),
		// by the page's own measure, within half its round trip.
		late1, early1 := checkPage(t, res, rg, want, res.Clock.OffsetMs-lag, res.Clock.RTTMs/2)
		late, early[res.Transport] = append(late, late1...), append(early[res.Transport], early1...)
		for _, g := range res.Periods {
			if !g.Period.CatchUp && g.PresentLateMs != nil {
				presented[g.Period.Period] = append(presented[g.Period.Period], *g.PresentLateMs)
			}
		}
	}
	// The skew across players: per period presented by all, the spread
	// of their callbacks.
	var skew []float64
	for _, ls := range presented {
		if len(ls) == players {
			skew = append(skew, slices.Max(ls)-slices.Min(ls))
		}
	}
	if len(skew) == 0 {
		t.Fatalf("no period presented by all %d players: %v", players, presented)
	}
	slices.Sort(late)
	slices.Sort(skew)
	st := web.Stats()
	slices.Sort(offsets)
	fmt.Printf("RESULT browser-clock players=%d offset-ms min=%.3f median=%.3f max=%.3f time-echoes=%d\n", players, offsets[0], offsets[len(offsets)/2], offsets[len(offsets)-1], st.TimeEchoes)
	if st.BadToken != 0 || st.Accepted < players {
		t.Errorf("%d sessions refused for their token, %d accepted; want 0 and ≥ %d", st.BadToken, st.Accepted, players)
	}
	t.Logf("page receiver stats: %s", all[0].Stats)
	fmt.Printf("RESULT browser-present players=%d (%d WebSocket, %d WebTransport) periods=%d present-late-ms median=%.3f max=%.3f skew-across-players-ms median=%.3f max=%.3f sent=%d slow=%d\n",
		players, perKind, perKind, len(skew), late[len(late)/2], late[len(late)-1], skew[len(skew)/2], skew[len(skew)-1], st.Sent, st.Slow)
	for _, tr := range []string{"ws", "wt"} {
		e := early[tr]
		if len(e) == 0 {
			t.Errorf("no periods over %s", tr)
			continue
		}
		slices.Sort(e)
		fmt.Printf("RESULT browser-keys transport=%s periods=%d keys-in-page-after-releaseAt-by-host-clock-ms median=%.3f min=%.3f max=%.3f\n", tr, len(e), e[len(e)/2], e[0], e[len(e)-1])
	}
}

// checkPage checks one page's periods against the origin's keys and
// returns its present callbacks' lateness and its keys' time after
// releaseAt on the host's clock (ms): the page's clock plus toHost,
// known within ±within.
func checkPage(t *testing.T, res pageResult, rg *rig, want int, toHost, within float64) (late, early []float64) {
	t.Helper()
	live := 0
	for _, g := range res.Periods {
		p := g.Period
		keys, ok := rg.keys(p.Period)
		if !ok {
			t.Errorf("period %d: the page has keys the origin never issued", p.Period)
			continue
		}
		var wantKeys []string
		for _, k := range keys {
			wantKeys = append(wantKeys, hex.EncodeToString(k.KID[:])+":"+hex.EncodeToString(k.Key[:]))
		}
		var gotKeys []string
		for _, k := range p.Keys {
			gotKeys = append(gotKeys, k.KID+":"+k.Key)
		}
		if !slices.Equal(gotKeys, wantKeys) {
			t.Errorf("period %d: page keys %v, origin's %v", p.Period, gotKeys, wantKeys)
		}
		// The edge sends the RELEASE once its clock's earliest time
		// (true time − 1 ms at most) has passed releaseAt: by the host's
		// clock, the page cannot hold a key before it. The page's own
		// clock (performance.timeOrigin + now) may be ms off the host's:
		// its time is taken to the host's by the measured offset, within
		// half the round trip. (The receiver stamps opened by Date.now(),
		// the host's clock itself, in whole ms.)
		got := g.GotAt + toHost
		if got+within < p.ReleaseAtUTC || p.OpenedUTC < p.ReleaseAtUTC {
			t.Errorf("period %d: keys in the page %.3f ± %.3f ms (opened %.3f ms) before releaseAt by the host's clock", p.Period, p.ReleaseAtUTC-got, within, p.ReleaseAtUTC-p.OpenedUTC)
		}
		for _, st := range g.Statuses {
			if st != "usable" {
				t.Errorf("period %d: ClearKey key status %q, want usable", p.Period, st)
			}
		}
		if len(g.Statuses) != len(p.Keys) {
			t.Errorf("period %d: %d ClearKey statuses for %d keys", p.Period, len(g.Statuses), len(p.Keys))
		}
		if !p.CatchUp { // a catch-up period was released before the page came
			early = append(early, got-p.ReleaseAtUTC)
		}
		if !p.CatchUp && g.PresentLateMs != nil {
			live++
			late = append(late, *g.PresentLateMs)
		}
	}
	if live < want {
		t.Errorf("%d live periods presented, want %d: %+v", live, want, res.Periods)
	}
	return late, early
}

// headless runs Chromium headless on url with a profile in dir. kill ends
// it and every process it forked (idempotent; call it always); logs is
// what it printed and cpu the CPU time its processes had used, once
// killed.
func headless(t *testing.T, browser, dir, url string) (logs func() []byte, kill func(), cpu func() time.Duration) {
	t.Helper()
	// The players are iframes of one page: the window holds them all in
	// view, and Chromium throttles none of them (timers, rendering or
	// the renderer's priority) as it would a background or hidden page.
	args := []string{"--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--disable-dev-shm-usage", "--user-data-dir=" + filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0",
		"--window-size=1280,720", "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
		"--disable-backgrounding-occluded-windows", "--autoplay-policy=no-user-gesture-required"}
	if os.Geteuid() == 0 {
		args = append(args, "--no-sandbox") // Chromium's sandbox refuses root
	}
	var out bytes.Buffer
	cmd := exec.Command(browser, append(args, url)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	var (
		once sync.Once
		used time.Duration
	)
	// Chromium forks a renderer, a zygote and a GPU process: the whole
	// group goes, its CPU time taken just before.
	kill = func() {
		once.Do(func() {
			used = groupCPU(cmd.Process.Pid)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		})
	}
	return func() []byte { kill(); return out.Bytes() }, kill, func() time.Duration { kill(); return used }
}

// groupCPU is the CPU time (user and system) the live processes of
// process group pgid have used, from /proc/PID/stat: what a browser run
// cost, whatever else the machine ran.
func groupCPU(pgid int) time.Duration {
	procs, _ := os.ReadDir("/proc")
	var ticks int64
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 {
			continue
		}
		// After the command: state, ppid, pgrp, …, utime (12th), stime.
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
