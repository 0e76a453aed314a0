package main

import (
	"sync"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// pageClock measures the edge's clock against the page's from time
// echoes (PROTOCOL.md §4.8): RFC 5905's on-wire arithmetic on each echo,
// keeping the sample of least round trip among the last clockSamples —
// the one least bent by queueing on either way. (facebook/time's ntp
// package does the arithmetic, but the page's binary keeps facebook/time
// out: TestDependencies.)
type pageClock struct {
	mu      sync.Mutex
	samples [clockSamples]clockSample
	n       int // echoes taken, of which the last clockSamples are kept
}

type clockSample struct{ offset, rtt time.Duration }

const (
	clockSamples = 8
	// maxEchoAge bounds an echo's round trip: an older or future origin
	// is not an answer to this page's request.
	maxEchoAge = 10 * time.Second
	maxInstant = 1 << 62
)

// ClockOffset is what the page reads: the edge's UTC minus the page's
// clock, from the sample of least round trip.
type ClockOffset struct {
	OffsetMs float64 `json:"offsetMs"`
	RTTMs    float64 `json:"rttMs"`
	Samples  int     `json:"samples"` // echoes taken; 0: no offset yet
}

// request is a time request sent at now.
func (c *pageClock) request(now time.Time) []byte {
	b := make([]byte, wire.TimeRequestLen)
	(&wire.TimeRequest{Origin: now.UnixNano()}).Encode(b)
	return b
}

// echo takes a time echo received at now; it reports false for one that
// is not an echo or cannot answer this page's request (a round trip
// negative or over maxEchoAge, an edge that held it longer than the
// round trip).
func (c *pageClock) echo(b []byte, now time.Time) bool {
	var e wire.TimeEcho
	if e.Decode(b) != nil {
		return false
	}
	t1, t4 := e.Origin, now.UnixNano()
	// Instants outside [1970, 2116] are refused: no arithmetic below
	// can overflow.
	if t4 < 0 || t4 > maxInstant || e.Received < 0 || e.Received > maxInstant || e.Sent < 0 || e.Sent > maxInstant {
		return false
	}
	t2, t3 := e.Received-int64(ptp.DefaultTAIOffset), e.Sent-int64(ptp.DefaultTAIOffset)
	trip, hold := t4-t1, t3-t2
	if t1 > t4 || trip > int64(maxEchoAge) || hold < 0 || hold > trip {
		return false
	}
	s := clockSample{offset: time.Duration((t2-t1)/2 + (t3-t4)/2), rtt: time.Duration(trip - hold)}
	c.mu.Lock()
	c.samples[c.n%clockSamples] = s
	c.n++
	c.mu.Unlock()
	return true
}

// offset is the current estimate.
func (c *pageClock) offset() ClockOffset {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return ClockOffset{}
	}
	best := c.samples[0]
	for _, s := range c.samples[1:min(c.n, clockSamples)] {
		if s.rtt < best.rtt {
			best = s
		}
	}
	return ClockOffset{OffsetMs: float64(best.offset) / float64(time.Millisecond), RTTMs: float64(best.rtt) / float64(time.Millisecond), Samples: c.n}
}
