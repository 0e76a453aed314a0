package origin

import (
	"fmt"
	"time"

	"github.com/embargo-live/embargo/wire"
)

// Announce leads of the origin service. A key period is issued — its
// content keys exist for packagers, its bundle for edges — one lead before
// its release.
const (
	// DefaultLead is long enough for a packager that encrypts segments as
	// they are encoded and publishes them seconds before the release, and
	// for a player that asks for a licence as soon as a segment is in its
	// manifest, two or three segments (of 2 to 6 s) ahead of the play head:
	// 12 s at most, plus a period of slack. 4 s was too short for either.
	// With the default 2 s key period it is the protocol's limit of
	// wire.MaxAnnounceLead periods.
	DefaultLead = 16 * time.Second
	// MinLead is the shortest lead the origin service runs with: edges
	// poll it every 500 ms, and one missed poll must still leave a bundle
	// time for the carousel's rounds before its release.
	MinLead = time.Second
)

// Instants are when a period's secret is released and its media presented
// (TAI ns).
type Instants struct {
	ReleaseAt int64
	PresentAt int64
}

// Schedule is a stream's key rotation: period p is released at
// Epoch + p·Period, presented PresentDelay later, and announced (its
// bundle issued to edges) Lead before its release.
type Schedule struct {
	Epoch        int64 // TAI ns: the release instant of period 0
	Period       time.Duration
	Lead         time.Duration
	PresentDelay time.Duration
}

// Check reports whether s can be run: a positive period of at least 10 ms,
// a lead within PROTOCOL.md's announce limit (wire.MaxAnnounceLead periods)
// and a non-negative present delay.
func (s Schedule) Check() error {
	switch {
	case s.Period < 10*time.Millisecond:
		return fmt.Errorf("%w: key period %v, want ≥ 10ms", ErrConfig, s.Period)
	case s.Lead <= 0 || s.Lead > wire.MaxAnnounceLead*s.Period:
		return fmt.Errorf("%w: announce lead %v, want > 0 and ≤ %d periods", ErrConfig, s.Lead, wire.MaxAnnounceLead)
	case s.PresentDelay < 0:
		return fmt.Errorf("%w: negative present delay", ErrConfig)
	case s.Epoch < 0:
		return fmt.Errorf("%w: negative epoch", ErrConfig)
	}
	return nil
}

// At returns period p's instants.
func (s Schedule) At(p uint64) Instants {
	r := s.Epoch + int64(p)*int64(s.Period)
	return Instants{ReleaseAt: r, PresentAt: r + int64(s.PresentDelay)}
}

// Current is the newest period released by t, or 0 before the epoch.
func (s Schedule) Current(t int64) uint64 {
	if t < s.Epoch {
		return 0
	}
	return uint64((t - s.Epoch) / int64(s.Period))
}

// Due returns the periods to announce at t: those not yet released whose
// announce time (releaseAt − Lead) has come, as the half-open range
// [first, end).
func (s Schedule) Due(t int64) (first, end uint64) {
	first = s.Current(t) + 1
	if t < s.Epoch {
		first = 0
	}
	end = s.Current(t+int64(s.Lead)) + 1
	if t+int64(s.Lead) < s.Epoch {
		end = 0
	}
	return first, max(first, end)
}
