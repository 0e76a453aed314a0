package main

import (
	"testing"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// echoFrom is the echo an edge whose clock is ahead of the page's by
// ahead sends to req, received after out and answered after hold.
func echoFrom(t *testing.T, req []byte, ahead, out, hold time.Duration) []byte {
	t.Helper()
	var r wire.TimeRequest
	if err := r.Decode(req); err != nil {
		t.Fatal(err)
	}
	recv := r.Origin + int64(out) + int64(ahead) + int64(ptp.DefaultTAIOffset)
	b := make([]byte, wire.TimeEchoLen)
	(&wire.TimeEcho{Origin: r.Origin, Received: recv, Sent: recv + int64(hold)}).Encode(b)
	return b
}

// The offset is the edge's time minus the page's, from the echo of
// least round trip: a slow, lopsided path does not bend it.
func TestPageClock(t *testing.T) {
	var c pageClock
	if got := c.offset(); got.Samples != 0 {
		t.Fatalf("offset before any echo: %+v", got)
	}
	const ahead = 250 * time.Millisecond
	page := time.Unix(1_800_000_000, 0)
	paths := []struct{ out, back, hold time.Duration }{
		{40 * time.Millisecond, 2 * time.Millisecond, time.Millisecond}, // queued one way: 19 ms off
		{3 * time.Millisecond, 3 * time.Millisecond, 0},                 // symmetric, least round trip
		{5 * time.Millisecond, 90 * time.Millisecond, 0},                // queued the other way
	}
	for _, p := range paths {
		req := c.request(page)
		if !c.echo(echoFrom(t, req, ahead, p.out, p.hold), page.Add(p.out+p.hold+p.back)) {
			t.Fatal("echo refused")
		}
		page = page.Add(time.Second)
	}
	got := c.offset()
	if got.Samples != 3 || got.OffsetMs != 250 || got.RTTMs != 6 {
		t.Errorf("offset %+v, want 250 ms from the 6 ms round trip of 3 samples", got)
	}
	// Not answers to this page: no sample.
	req := c.request(page)
	for name, at := range map[string]time.Time{
		"before it was sent": page.Add(-time.Millisecond),
		"too old":            page.Add(maxEchoAge + time.Second),
		"held too long":      page.Add(time.Millisecond), // hold 10 ms > round trip
	} {
		if c.echo(echoFrom(t, req, ahead, 0, 10*time.Millisecond), at) {
			t.Errorf("%s: echo taken", name)
		}
	}
	if c.echo(req, page) || c.echo([]byte("EMBT"), page) {
		t.Error("a request or a short message taken for an echo")
	}
	if got := c.offset(); got.Samples != 3 {
		t.Errorf("%d samples after refused echoes, want 3", got.Samples)
	}
}

// Only the last clockSamples count: a clock that steps is followed.
func TestPageClockForgets(t *testing.T) {
	var c pageClock
	page := time.Unix(1_800_000_000, 0)
	for i := range clockSamples + 1 {
		ahead, out := time.Second, time.Millisecond // the first: 1 s ahead, the least round trip
		if i > 0 {
			ahead, out = -time.Second, 2*time.Millisecond
		}
		req := c.request(page)
		c.echo(echoFrom(t, req, ahead, out, 0), page.Add(2*out))
		page = page.Add(time.Second)
	}
	if got := c.offset(); got.OffsetMs != -1000 {
		t.Errorf("offset %v ms after %d samples of -1000, want -1000", got.OffsetMs, clockSamples)
	}
}

// FuzzPageClock: any message is taken or not, never a panic, and a
// taken one gives a round trip within maxEchoAge.
func FuzzPageClock(f *testing.F) {
	page := time.Unix(1_800_000_000, 0)
	var c pageClock
	f.Add(c.request(page), int64(time.Millisecond))
	b := make([]byte, wire.TimeEchoLen)
	(&wire.TimeEcho{Origin: page.UnixNano(), Received: page.UnixNano() + int64(ptp.DefaultTAIOffset), Sent: page.UnixNano() + int64(ptp.DefaultTAIOffset)}).Encode(b)
	f.Add(b, int64(time.Millisecond))
	f.Fuzz(func(t *testing.T, b []byte, after int64) {
		var c pageClock
		if c.echo(b, page.Add(time.Duration(after))) {
			if got := c.offset(); got.Samples != 1 || got.RTTMs < 0 || got.RTTMs > float64(maxEchoAge/time.Millisecond) {
				t.Fatalf("taken echo gives %+v", got)
			}
		}
	})
}
