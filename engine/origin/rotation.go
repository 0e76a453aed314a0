package origin

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// Rotation issues a bundle for every stream and period as the schedule
// makes it due, with fresh content keys each time.
type Rotation struct {
	Origin   *Origin
	Schedule Schedule
	Streams  []uint32
	Keys     int       // content keys per period; 0 means 1
	Clock    ptp.Clock // its best estimate (Mid) decides what is due
	// Derive issues each period from Origin.Derive instead of fresh
	// randomness, so that a restarted rotation reissues the same bundles
	// (the same RK) for the periods it had issued.
	Derive bool
	Logger *slog.Logger
}

// Issued is one period's bundle and the content keys inside it.
type Issued struct {
	Bundle *bundle.Bundle
	Keys   []seal.ContentKey
}

// Run issues due periods to deliver until ctx ends, then returns ctx's
// error; an error from deliver is logged and that period skipped. It does
// not issue periods whose release the clock's best estimate says has
// passed (they would only be released late), so a rotation started late
// begins with the next period; nor anything while the clock reads
// unsynchronized. Periods are issued in order; after the clock steps
// back, the rotation starts over from the due periods (the edge refuses
// any it already holds).
func (r *Rotation) Run(ctx context.Context, deliver func(Issued) error) error {
	if err := r.Schedule.Check(); err != nil {
		return err
	}
	if r.Origin == nil || r.Clock == nil || len(r.Streams) == 0 {
		return fmt.Errorf("%w: rotation needs an origin, a clock and streams", ErrConfig)
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var next uint64
	started, warned := false, false
	tick := time.NewTicker(min(r.Schedule.Period/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		switch now, err := r.Clock.Now(); {
		case err != nil:
			log.Warn("rotation: clock read failed", "err", err)
		case now.State == ptp.StateUnsynchronized:
			// Its readings may be far off: issuing on them would skip
			// periods (a clock ahead) and then never go back.
			if !warned {
				log.Warn("rotation: clock unsynchronized, not issuing until it is", "reason", now.Reason)
				warned = true
			}
		default:
			warned = false
			first, end := r.Schedule.Due(now.Mid())
			// Catch up after a stall; start over after a step back.
			if !started || next < first || next > end {
				next, started = first, true
			}
			for ; next < end; next++ {
				r.issue(next, deliver, log)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (r *Rotation) issue(period uint64, deliver func(Issued) error, log *slog.Logger) {
	at := r.Schedule.At(period)
	for _, stream := range r.Streams {
		o := r.Origin
		if r.Derive {
			o = o.Derive(stream, period)
		}
		keys, err := o.NewContentKeys(max(r.Keys, 1))
		if err == nil {
			var b *bundle.Bundle
			if b, err = o.Keys(stream, period, at, keys); err == nil {
				err = deliver(Issued{Bundle: b, Keys: keys})
			}
		}
		if err != nil {
			log.Error("rotation: period not issued", "stream", stream, "period", period, "err", err)
		}
	}
}
