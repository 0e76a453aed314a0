package origin

import (
	"fmt"
	"time"

	"github.com/embargo-live/embargo/wire"
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
