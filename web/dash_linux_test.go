package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// dashPlayers are the DASH players' builds, as `npm ci` in web/ installs
// them (pinned in package.json): each a classic script defining its
// global.
var dashPlayers = map[string]string{
	"shaka":  "node_modules/shaka-player/dist/shaka-player.dash.js",
	"dashjs": "node_modules/dashjs/dist/modern/umd/dash.all.min.js",
}

// dashResult is what testdata/dash.html posts.
type dashResult struct {
	Error     string `json:"error"`
	Transport string `json:"transport"`
	First     uint64 `json:"first"`
	Periods   []struct {
		Period       uint64  `json:"period"`
		ReleaseAtUTC float64 `json:"releaseAtUTC"`
		PresentAtUTC float64 `json:"presentAtUTC"`
		Keys         []struct {
			KID string `json:"kid"`
			Key string `json:"key"`
		} `json:"keys"`
		FirstFrame *videoFrame `json:"firstFrame"`
	} `json:"periods"`
	// Licences are the licence requests the library (attachShaka,
	// attachDashjs) answered: their KIDs and when the player asked and the
	// answer was made (edges' clock, UTC ms).
	Licences []struct {
		KIDs        []string `json:"kids"`
		RequestedAt float64  `json:"requestedUTC"`
		AnsweredAt  float64  `json:"answeredUTC"`
		// RTTMs is the round trip of the time echo the page's clock
		// stood on: the instants are the edge's within half of it.
		RTTMs float64 `json:"rttMs"`
	} `json:"licences"`
	Waiting int `json:"waiting"`
	// ShownAt is when the library showed the video it had hidden until
	// the first period's presentAt (edges' clock, UTC ms; 0: never);
	// HiddenFrames and VisibleEarly count the frames drawn before that,
	// with the video hidden and visible.
	ShownAt      float64 `json:"shownAt"`
	HiddenFrames int     `json:"hiddenFrames"`
	VisibleEarly int     `json:"visibleEarly"`
	// WaitingAt is each stall's media time (s), readyState and instant
	// (edges' clock, UTC ms); Buffered the media's buffered ranges at the end.
	WaitingAt        [][3]float64 `json:"waitingAt"`
	Buffered         [][2]float64 `json:"buffered"`
	CurrentTime      float64      `json:"currentTime"`
	Frames           int          `json:"frames"`
	Dropped          int          `json:"dropped"`
	MinRate, MaxRate float64
	// Bad is the Shaka error codes of bad licence requests (0: answered);
	// Shaka only.
	Bad *struct {
		URI         string `json:"uri"`
		NotClearKey int    `json:"notClearKey"`
		Unattached  int    `json:"unattached"`
		Aborted     int    `json:"aborted"`
	} `json:"bad"`
	// BadDashjs is what dash.js players made of licence requests
	// attachDashjs cannot answer; dash.js only.
	BadDashjs *badDashjs `json:"badDashjs"`
}

// dashPeriod is one key period of the test's DASH presentation: its
// init segment and its one media segment, CENC under the period's KID.
type dashPeriod struct {
	kid         [16]byte
	init, media []byte
}

// dashStore holds the periods' segments as the origin issues them.
type dashStore struct {
	mu    sync.Mutex
	segs  map[uint64]dashPeriod
	first uint64        // the first period issued (0: none yet)
	ready chan struct{} // closed and replaced at each new period
}

func (s *dashStore) add(p uint64, d dashPeriod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.segs[p] = d
	if s.first == 0 {
		s.first = p
	}
	close(s.ready)
	s.ready = make(chan struct{})
}

// wait returns periods from..from+n-1 once all are issued.
func (s *dashStore) wait(ctx context.Context, from uint64, n int) ([]dashPeriod, error) {
	for {
		s.mu.Lock()
		var out []dashPeriod
		for p := from; p < from+uint64(n); p++ {
			if d, ok := s.segs[p]; ok {
				out = append(out, d)
			}
		}
		ready := s.ready
		s.mu.Unlock()
		if len(out) == n {
			return out, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// firstIssued returns the first period issued, once there is one.
func (s *dashStore) firstIssued(ctx context.Context) (uint64, error) {
	for {
		s.mu.Lock()
		first, ready := s.first, s.ready
		s.mu.Unlock()
		if first != 0 {
			return first, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// since returns the periods issued from period from on, up to the first
// not issued.
func (s *dashStore) since(from uint64) []dashPeriod {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dashPeriod
	for p := from; ; p++ {
		d, ok := s.segs[p]
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// mpd is a static multi-period DASH MPD of periods (the first is key
// period from), each period long: one AdaptationSet signalling CENC
// with its KID (cenc:default_KID) and ClearKey, its segments at
// /dash/{period}/init.mp4 and media.mp4.
func mpd(from uint64, periods []dashPeriod, period time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:cenc="urn:mpeg:cenc:2013" type="static" profiles="urn:mpeg:dash:profile:isoff-main:2011" minBufferTime="PT1S" mediaPresentationDuration="PT%gS">
`, period.Seconds()*float64(len(periods)))
	for i, d := range periods {
		p := from + uint64(i)
		mpdPeriod(&b, p, d.kid, fmt.Sprintf(`start="PT%gS" duration="PT%gS"`, period.Seconds()*float64(i), period.Seconds()),
			fmt.Sprintf(`<SegmentList timescale="1000" duration="%d">
     <Initialization sourceURL="/dash/%d/init.mp4"/>
     <SegmentURL media="/dash/%d/media.mp4"/>
    </SegmentList>`, period.Milliseconds(), p, p))
	}
	b.WriteString("</MPD>\n")
	return b.String()
}

// mpdPeriod writes key period p's Period element: timing its attributes
// (start, duration), one AdaptationSet signalling CENC with kid
// (cenc:default_KID) and ClearKey, its Representation's segments as
// segments says.
func mpdPeriod(b *strings.Builder, p uint64, kid [16]byte, timing, segments string) {
	k := hex.EncodeToString(kid[:])
	fmt.Fprintf(b, ` <Period id="%d" %s>
  <AdaptationSet contentType="video" mimeType="video/mp4" codecs="avc1.42E01E" width="320" height="180" frameRate="25">
   <ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc" cenc:default_KID="%s-%s-%s-%s-%s"/>
   <ContentProtection schemeIdUri="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" value="ClearKey1.0"/>
   <Representation id="v%d" bandwidth="300000">
    %s
   </Representation>
  </AdaptationSet>
 </Period>
`, p, timing, k[:8], k[8:12], k[12:16], k[16:20], k[20:], p, segments)
}

// cencSource makes what periodSegment needs in dir: the clear clip,
// period long, and a template, the clip fragmented and encrypted under a
// throwaway key, other, that no period has.
func cencSource(t *testing.T, ff, dir string, period time.Duration) (clip string, template []byte, other seal.ContentKey) {
	t.Helper()
	clip = clearClip(t, ff, dir, period)
	rand.Read(other.Key[:])
	rand.Read(other.KID[:])
	template, err := encrypt(ff, clip, dir, "template.mp4", other, true)
	if err != nil {
		t.Fatal(err)
	}
	return clip, template, other
}

// TestChromiumShaka plays the rotating-key DASH presentation in Shaka
// Player, its licences from attachShaka (see playDASH); bad licence
// requests are Shaka errors, never a hang.
func TestChromiumShaka(t *testing.T) {
	for _, res := range playDASH(t, "shaka", false) {
		// Shaka's LICENSE_REQUEST_FAILED (6007) and OPERATION_ABORTED (7001).
		if b := res.Bad; b == nil || b.NotClearKey != 6007 || b.Unattached != 6007 || b.Aborted != 7001 {
			t.Errorf("%s player: bad licence requests %+v; want not ClearKey → 6007, no player attached → 6007, aborted → 7001", res.Transport, b)
		}
	}
}

// TestChromiumDashjs plays the rotating-key DASH presentation in dash.js,
// its licences from attachDashjs (see playDASH); licence requests the
// library cannot answer are dash.js errors naming why, never a hang, and
// the library drops its waits for their keys.
func TestChromiumDashjs(t *testing.T) {
	for _, res := range playDASH(t, "dashjs", false) {
		checkDashjsBad(t, res)
	}
}

// playDASH plays a multi-period CENC DASH presentation, its key rotating
// every period, in an unmodified DASH player (dashPlayers) in headless
// Chromium, one over WebSocket and one over WebTransport: each player's
// licence server is the web library's (attachShaka, attachDashjs),
// answering from the edge's releases, which also keeps playback on the
// period schedule. Asserted: every period's licence answered with the
// origin's key and never before its releaseAt, every period's frames
// displayed, no player or media error. Timings are reported (RESULT
// lines). With live, the MPD is dynamic (liveMPD) and the players join
// it at their live edge. It returns the players' results.
func playDASH(t *testing.T, player string, live bool) []dashResult {
	browser := chromium(t)
	ff := ffmpeg(t)
	if _, err := os.Stat(dashPlayers[player]); err != nil {
		t.Skipf("no %s (%v): run `npm ci` in web/ (.ci/run does) to run the %s test", player, err, player)
	}
	realtime.Exclusive(t)
	dir := t.TempDir()
	mpdType := "static"
	if live {
		mpdType = "dynamic"
	}
	const (
		want    = 4 // periods each player plays
		perKind = 1 // players over each transport
		players = 2 * perKind
	)
	// The static MPD is served once every period it lists is issued,
	// Lead ahead of its release. With Lead ≥ want periods, that is before
	// the first of them is released, so the player may ask for every
	// licence ahead: the library holds each until its release. The live
	// MPD lists each period as it is issued, 3 s ahead of its release: it
	// grows while the players play. (dash.js buffers a Period ahead only
	// if it is listed when the one before is buffered: with 2 s, the
	// second period was fetched after its release and stalled.)
	sched := origin.Schedule{Period: time.Second, Lead: want * time.Second, PresentDelay: 300 * time.Millisecond}
	if live {
		sched.Lead = 3 * time.Second
	}
	clip, template, other := cencSource(t, ff, dir, sched.Period)
	// Period 0 is never issued: its segment is the template, under a key
	// never released (the dash.js page's bad licence requests).
	never, err := withPSSH(template, clearKeyPSSH(other.KID))
	if err != nil {
		t.Fatal(err)
	}
	neverMoof, err := mp4Find(never, 0, len(never), 8, "moof")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	clock, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	store := &dashStore{segs: map[uint64]dashPeriod{}, ready: make(chan struct{})}
	fetched := &segmentFetches{at: map[uint64][]time.Time{}}
	rg := newRig(t, ctx, sched, 1, clock, func(is origin.Issued) {
		p := is.Bundle.Period
		seg, err := periodSegment(ff, clip, dir, template, p, is.Keys[0])
		if err != nil {
			t.Error(err)
			return
		}
		moof, err := mp4Find(seg, 0, len(seg), 8, "moof")
		if err != nil {
			t.Errorf("period %d: %v", p, err)
			return
		}
		store.add(p, dashPeriod{kid: is.Keys[0].KID, init: seg[:moof.start], media: seg[moof.start:]})
	})
	rg.mux.HandleFunc("GET /dash.html", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, "testdata/dash.html") })
	rg.mux.HandleFunc("GET /player.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, dashPlayers[player]) })
	rg.mux.HandleFunc("GET /dash.json", func(w http.ResponseWriter, r *http.Request) {
		o := maps.Clone(rg.options)
		o["want"], o["periodMs"], o["player"] = want, sched.Period.Milliseconds(), player
		if live {
			first, err := store.firstIssued(r.Context())
			if err != nil {
				return
			}
			o["live"], o["liveFrom"] = true, first
		}
		json.NewEncoder(w).Encode(o)
	})
	if live {
		handleLive(rg.mux, rg.base, store, sched)
	}
	// The MPD and segments are answered once their periods are issued.
	rg.mux.HandleFunc("GET /dash/{p}/{file}", func(w http.ResponseWriter, r *http.Request) {
		p, err := strconv.ParseUint(r.PathValue("p"), 10, 64)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.PathValue("file") != "manifest.mpd" {
			n = 1
		}
		if err != nil || n < 1 || n > 100 {
			http.Error(w, "want /dash/{period}/manifest.mpd?n={1…100}, init.mp4 or media.mp4", http.StatusBadRequest)
			return
		}
		ds := []dashPeriod{{kid: other.KID, init: never[:neverMoof.start], media: never[neverMoof.start:]}}
		if p != 0 {
			if ds, err = store.wait(r.Context(), p, n); err != nil {
				return
			}
		}
		if r.PathValue("file") == "media.mp4" {
			fetched.add(p)
		}
		switch r.PathValue("file") {
		case "manifest.mpd":
			w.Header().Set("Content-Type", "application/dash+xml")
			w.Write([]byte(mpd(p, ds, sched.Period)))
		case "init.mp4":
			w.Header().Set("Content-Type", "video/mp4")
			w.Write(ds[0].init)
		case "media.mp4":
			w.Header().Set("Content-Type", "video/mp4")
			w.Write(ds[0].media)
		default:
			http.NotFound(w, r)
		}
	})
	results := make(chan dashResult, players)
	handleResults(rg.mux, results, func(r *dashResult, err string) { r.Error = err })
	logs, kill, _ := headless(t, browser, dir, fmt.Sprintf("%s/players.html?page=/dash.html&ws=%d&wt=%d", rg.base, perKind, perKind))
	defer kill()

	var all []dashResult
	for len(all) < players {
		select {
		case res := <-results:
			if res.Error != "" {
				kill()
				t.Fatalf("%s page: %s; chromium said:\n%s", res.Transport, res.Error, tail(logs(), 4000))
			}
			all = append(all, res)
		case <-ctx.Done():
			kill()
			t.Fatalf("%d of %d players posted a result in time; chromium said:\n%s", len(all), players, tail(logs(), 4000))
		}
	}

	var answered, held, late, starts, shown []float64
	for _, res := range all {
		// When each KID's licence was answered, and what was asked.
		answeredAt, within := map[string]float64{}, map[string]float64{}
		for _, l := range res.Licences {
			for _, kid := range l.KIDs {
				answeredAt[kid], within[kid] = l.AnsweredAt, l.RTTMs/2
			}
			held = append(held, l.AnsweredAt-l.RequestedAt)
		}
		// Never a frame on screen before presentAt: the library hid the
		// video until then (ordering of events in the page, no clock).
		if res.VisibleEarly != 0 || res.ShownAt == 0 {
			t.Errorf("%s player: %d frames drawn with the video visible before the library showed it (at %.1f, 0: never); %d drawn hidden", res.Transport, res.VisibleEarly, res.ShownAt, res.HiddenFrames)
		}
		if res.Waiting > 0 {
			t.Logf("%s player: stalls (media time s, readyState, edge UTC ms) %v, buffered %v", res.Transport, res.WaitingAt, res.Buffered)
		}
		played := 0
		for _, g := range res.Periods {
			if g.Period < res.First || g.Period >= res.First+want {
				continue
			}
			keys, ok := rg.keys(g.Period)
			if !ok || len(g.Keys) != 1 || g.Keys[0].KID != hex.EncodeToString(keys[0].KID[:]) || g.Keys[0].Key != hex.EncodeToString(keys[0].Key[:]) {
				t.Errorf("%s player, period %d: page keys %+v, origin's %x", res.Transport, g.Period, g.Keys, keys)
				continue
			}
			// The edge releases once its clock's earliest time has passed
			// releaseAt; the page's clock is measured against it within half the
			// echo's round trip: the licence cannot have been answered before.
			answeredAt1, ok := answeredAt[g.Keys[0].KID]
			if !ok {
				t.Errorf("%s player, period %d: %s never had its licence (KID %s) from the library; licences %+v", res.Transport, g.Period, player, g.Keys[0].KID, res.Licences)
				continue
			}
			if answeredAt1+within[g.Keys[0].KID] < g.ReleaseAtUTC {
				t.Errorf("%s player, period %d: licence answered %.3f ± %.3f ms before releaseAt", res.Transport, g.Period, g.ReleaseAtUTC-answeredAt1, within[g.Keys[0].KID])
				continue
			}
			answered = append(answered, answeredAt1-g.ReleaseAtUTC)
			t.Logf("%s player, period %d: licence answered %.1f ms after releaseAt, presentAt %.0f", res.Transport, g.Period, answeredAt1-g.ReleaseAtUTC, g.PresentAtUTC)
			// The first period's is drawn paused (hidden) once
			// decryptable, before playback starts at presentAt.
			at, ok := firstFrameAt(g.FirstFrame, g.PresentAtUTC)
			if !ok {
				t.Errorf("%s player, period %d: no frame displayed", res.Transport, g.Period)
				continue
			}
			played++
			if g.Period == res.First {
				starts = append(starts, at)
				shown = append(shown, res.ShownAt-g.PresentAtUTC)
			} else {
				late = append(late, at)
			}
		}
		if played != want {
			t.Errorf("%s player: frames of %d periods displayed from period %d, want %d (at %.3f s, %d frames, %d dropped)", res.Transport, played, res.First, want, res.CurrentTime, res.Frames, res.Dropped)
		}
		fmt.Printf("RESULT browser-dash-player mpd=%s player=%s transport=%s frames=%d dropped=%d stalls-after-start=%d keepInStep-rate=%.3f…%.3f\n",
			mpdType, player, res.Transport, res.Frames, res.Dropped, res.Waiting, res.MinRate, res.MaxRate)
	}
	if t.Failed() {
		return all
	}
	for _, s := range [][]float64{answered, held, late, starts, shown} {
		slices.Sort(s)
	}
	q := func(s []float64) string {
		return fmt.Sprintf("min=%.1f median=%.1f max=%.1f", s[0], s[len(s)/2], s[len(s)-1])
	}
	// A static presentation's first frame is drawn paused, hidden, before
	// presentAt; a live player starts at its live edge, short of it, and
	// is put on the first period at presentAt.
	fmt.Printf("RESULT browser-dash mpd=%s player=%s players=%d (%d WebSocket, %d WebTransport) periods=%d of %v licence-answered-after-releaseAt-ms %s licence-held-ms %s first-frame-after-presentAt-ms %s start-first-frame-after-presentAt-ms %s shown-after-presentAt-ms %s",
		mpdType, player, players, perKind, perKind, want, sched.Period, q(answered), q(held), q(late), q(starts), q(shown))
	if before := fetched.beforeRelease(sched, all, want); len(before) > 0 {
		slices.Sort(before)
		fmt.Printf(" segment-fetched-before-releaseAt-ms %s", q(before))
	}
	fmt.Println()
	return all
}
