package web

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
)

// TestChromiumShakaLive plays the rotating-key presentation from a live
// MPD that grows as the origin issues periods (liveMPD) in Shaka Player,
// its licences from attachShaka (see playDASH).
func TestChromiumShakaLive(t *testing.T) {
	playDASH(t, "shaka", true)
}

// TestChromiumDashjsLive plays the live presentation (liveMPD) in
// dash.js, its licences from attachDashjs (see playDASH).
func TestChromiumDashjsLive(t *testing.T) {
	playDASH(t, "dashjs", true)
}

// isoMs is the MPD's xs:dateTime, to the millisecond.
const isoMs = "2006-01-02T15:04:05.000Z"

// liveMPD is the live (dynamic) MPD of periods, key period first on, as
// a packager that starts a Period at every key change publishes it (the
// key is the Period's cenc:default_KID, as a player needs it to open a
// licence request before the period's media): one Period per key
// period, id the period number, one segment each, SegmentTemplate with
// $Number$ the key period and an explicit SegmentTimeline. Its timeline
// is the period schedule: a period's segment is available
// (availabilityStartTime + its Period's start + its duration) when the
// origin issues it, Lead before its releaseAt — before its key — and the
// suggestedPresentationDelay puts the live edge on presentAt, so a
// player at its live edge shows each period's first frame at its
// presentAt. Players set their clocks by timeURL (UTCTiming).
//
// It lists the Periods in its time-shift window only, one period longer
// than the presentation delay (so a paused player is not pushed off its
// start): the live edge's Period and the one before. A receiver joining
// late holds the keys of the last released periods only (the edge's
// catch-up, webedge.DefaultCatchUp: 2, the live edge's among them); a
// player asks for the licences of the periods it buffers, from the live
// edge on (with attachShaka, which drops the MPD's KIDs, Shaka too).
func liveMPD(first uint64, periods []dashPeriod, sched origin.Schedule, timeURL string, now time.Time) string {
	d := sched.Period
	ast := ptp.DefaultTAIOffset.ToTime(sched.At(first).ReleaseAt).Add(-sched.Lead - d).UTC()
	delay := sched.Lead + d + sched.PresentDelay
	window := delay + d
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:cenc="urn:mpeg:cenc:2013" type="dynamic" profiles="urn:mpeg:dash:profile:isoff-live:2011" availabilityStartTime="%s" publishTime="%s" minimumUpdatePeriod="PT%gS" timeShiftBufferDepth="PT%gS" suggestedPresentationDelay="PT%gS" minBufferTime="PT1S">
`, ast.Format(isoMs), now.UTC().Format(isoMs), d.Seconds(), window.Seconds(), delay.Seconds())
	for i, dp := range periods {
		p := first + uint64(i)
		if ast.Add(time.Duration(i+1) * d).Before(now.Add(-window)) {
			continue // its media ends before the window
		}
		mpdPeriod(&b, p, dp.kid, fmt.Sprintf(`start="PT%gS"`, d.Seconds()*float64(i)),
			fmt.Sprintf(`<SegmentTemplate timescale="1000" startNumber="%d" initialization="/dash/%d/init.mp4" media="/dash/$Number$/media.mp4">
     <SegmentTimeline><S t="0" d="%d"/></SegmentTimeline>
    </SegmentTemplate>`, p, p, d.Milliseconds()))
	}
	fmt.Fprintf(&b, ` <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="%s"/>
</MPD>
`, timeURL)
	return b.String()
}

// handleLive serves the live presentation on mux: GET /dash/live.mpd,
// the dynamic MPD of the periods issued so far (liveMPD), and GET
// /dash/time, the UTCTiming source its players set their clocks by (the
// host's, which the edge keeps). base is the server's URL.
func handleLive(mux *http.ServeMux, base string, store *dashStore, sched origin.Schedule) {
	mux.HandleFunc("GET /dash/time", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(time.Now().UTC().Format(isoMs)))
	})
	mux.HandleFunc("GET /dash/live.mpd", func(w http.ResponseWriter, r *http.Request) {
		first, err := store.firstIssued(r.Context())
		if err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/dash+xml")
		w.Write([]byte(liveMPD(first, store.since(first), sched, base+"/dash/time", time.Now())))
	})
}

// segmentFetches records when each period's media segment was served.
type segmentFetches struct {
	mu sync.Mutex
	at map[uint64][]time.Time
}

func (f *segmentFetches) add(p uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at[p] = append(f.at[p], time.Now())
}

// beforeRelease is how long before its period's releaseAt (ms, by the
// host's clock) each fetch of a period the players played was served.
func (f *segmentFetches) beforeRelease(sched origin.Schedule, all []dashResult, want int) []float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	played := map[uint64]bool{}
	for _, res := range all {
		for p := res.First; p < res.First+uint64(want); p++ {
			played[p] = true
		}
	}
	var out []float64
	for p := range played {
		release := ptp.DefaultTAIOffset.ToTime(sched.At(p).ReleaseAt)
		for _, at := range f.at[p] {
			out = append(out, float64(release.Sub(at))/float64(time.Millisecond))
		}
	}
	return out
}

// badDashjs is what dash.js players made of licence requests
// attachDashjs cannot answer (testdata/dash.html): the dash.js error of
// one whose body is not a ClearKey licence request, and of one held for
// a KID never released when attachDashjs is detached; the receiver's
// pending key waits (Receiver.pendingKeys) more than before, with such
// a request held and once it is dropped, on detach and on player reset.
type badDashjs struct {
	NotClearKey, Detached dashjsError
	HeldDetach            int `json:"heldDetach"`
	AfterDetach           int `json:"afterDetach"`
	HeldReset             int `json:"heldReset"`
	AfterReset            int `json:"afterReset"`
}

// dashjsError is a dash.js ERROR event's error.
type dashjsError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// checkDashjsBad checks a dash.js page's bad licence requests: each a
// dash.js licence error (MEDIA_KEY_MESSAGE_LICENSER_ERROR, 114) naming
// why, and the library's waits for their keys dropped.
func checkDashjsBad(t *testing.T, res dashResult) {
	t.Helper()
	b := res.BadDashjs
	if b == nil {
		t.Errorf("%s player: no bad licence requests tried", res.Transport)
		return
	}
	for _, c := range []struct {
		name string
		e    dashjsError
		why  string
	}{{"not a ClearKey licence request", b.NotClearKey, "not a ClearKey licence request"}, {"held, then detached", b.Detached, "detached"}} {
		if c.e.Code != 114 || !strings.Contains(c.e.Message, c.why) {
			t.Errorf("%s player, %s: dash.js error %d %q; want 114 (licenser error) naming %q", res.Transport, c.name, c.e.Code, c.e.Message, c.why)
		}
	}
	if b.HeldDetach < 1 || b.AfterDetach != 0 || b.HeldReset < 1 || b.AfterReset != 0 {
		t.Errorf("%s player: key waits held %d, %d after detach; held %d, %d after reset; want ≥ 1, then 0", res.Transport, b.HeldDetach, b.AfterDetach, b.HeldReset, b.AfterReset)
	}
	fmt.Printf("RESULT browser-dash-bad player=dashjs transport=%s not-clearkey=%d detached=%d waits-held=%d/%d waits-after=%d/%d\n",
		res.Transport, b.NotClearKey.Code, b.Detached.Code, b.HeldDetach, b.HeldReset, b.AfterDetach, b.AfterReset)
}

// TestLiveMPD checks liveMPD's timing against the period schedule: each
// listed period's segment available (availabilityStartTime + its
// Period's start + its duration) exactly when the origin issues it, Lead
// before its releaseAt; the live edge (availability minus the
// presentation delay) on its presentAt; Periods whose media ends before
// the time-shift window left out; $Number$ the key period.
func TestLiveMPD(t *testing.T) {
	sched := origin.Schedule{Period: time.Second, Lead: 3 * time.Second, PresentDelay: 300 * time.Millisecond}
	const first = 1_000_000
	var periods []dashPeriod
	for range 12 {
		periods = append(periods, dashPeriod{kid: randomKey().KID})
	}
	utc := func(p uint64, at func(origin.Instants) int64) time.Time {
		return ptp.DefaultTAIOffset.ToTime(at(sched.At(p)))
	}
	now := utc(first+10, func(i origin.Instants) int64 { return i.ReleaseAt }).Add(100 * time.Millisecond)
	var m struct {
		Type      string `xml:"type,attr"`
		AST       string `xml:"availabilityStartTime,attr"`
		TSBD      string `xml:"timeShiftBufferDepth,attr"`
		Delay     string `xml:"suggestedPresentationDelay,attr"`
		UTCTiming struct {
			Value string `xml:"value,attr"`
		} `xml:"UTCTiming"`
		Periods []struct {
			ID       uint64 `xml:"id,attr"`
			Start    string `xml:"start,attr"`
			Template struct {
				StartNumber uint64 `xml:"startNumber,attr"`
				Media       string `xml:"media,attr"`
				S           struct {
					D int64 `xml:"d,attr"`
				} `xml:"SegmentTimeline>S"`
			} `xml:"AdaptationSet>Representation>SegmentTemplate"`
		} `xml:"Period"`
	}
	if err := xml.Unmarshal([]byte(liveMPD(first, periods, sched, "http://t/time", now)), &m); err != nil {
		t.Fatal(err)
	}
	seconds := func(d string) time.Duration {
		v, err := time.ParseDuration(strings.ToLower(strings.TrimPrefix(d, "PT")))
		if err != nil {
			t.Fatalf("duration %q: %v", d, err)
		}
		return v
	}
	ast, err := time.Parse(isoMs, m.AST)
	if err != nil {
		t.Fatal(err)
	}
	delay, window := seconds(m.Delay), seconds(m.TSBD)
	if m.Type != "dynamic" || m.UTCTiming.Value != "http://t/time" || window <= delay {
		t.Errorf("type %q, UTCTiming %q, time-shift window %v, delay %v; want dynamic, the time URL, a window longer than the delay", m.Type, m.UTCTiming.Value, window, delay)
	}
	if len(m.Periods) == 0 {
		t.Fatal("no Period listed")
	}
	for _, p := range m.Periods {
		start := seconds(p.Start)
		end := ast.Add(start + time.Duration(p.Template.S.D)*time.Millisecond)
		issued := utc(p.ID, func(i origin.Instants) int64 { return i.ReleaseAt }).Add(-sched.Lead)
		if !end.Equal(issued) {
			t.Errorf("period %d: segment available at %v, issued at %v", p.ID, end, issued)
		}
		if edge, presentAt := ast.Add(start+delay), utc(p.ID, func(i origin.Instants) int64 { return i.PresentAt }); !edge.Equal(presentAt) {
			t.Errorf("period %d: live edge at its start at %v, presentAt %v", p.ID, edge, presentAt)
		}
		if end.Before(now.Add(-window)) {
			t.Errorf("period %d: listed, its media ends %v before the window", p.ID, now.Add(-window).Sub(end))
		}
		if p.Template.StartNumber != p.ID || p.Template.Media != "/dash/$Number$/media.mp4" {
			t.Errorf("period %d: startNumber %d, media %q", p.ID, p.Template.StartNumber, p.Template.Media)
		}
	}
	// The window holds the periods whose media ends after now − window.
	// now is 0.1 s after period first+10's release, the window 5.3 s: the
	// live edge is in first+9 (presentAt ≤ now), first+8 the one before.
	if got := m.Periods[0].ID; got != first+8 {
		t.Errorf("first Period listed %d, want %d (media ending after %v)", got, first+8, now.Add(-window))
	}
	if last := m.Periods[len(m.Periods)-1].ID; last != first+uint64(len(periods))-1 {
		t.Errorf("last Period listed %d, want %d", last, first+len(periods)-1)
	}
}
