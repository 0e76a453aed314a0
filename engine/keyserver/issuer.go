package keyserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// Issuer issues each stored event's periods ahead of time: a period is
// generated and durably stored before anything can serve it, and a stored
// period is what is served ever after.
type Issuer struct {
	store  *keystore.Store
	signer ed25519.PrivateKey
	clock  ptp.Clock
	log    *slog.Logger

	mu      sync.Mutex
	origins map[uint32]*origin.Origin
	events  map[uint32]*keystore.Event
	cache   map[periodKey]*keystore.Period
}

type periodKey struct {
	stream uint32
	period uint64
}

// DefaultTokenLife is how long a subscription token lives: an edge that
// requires tokens checks one only when subscribing, so a short life costs
// a viewer nothing while subscribed.
const DefaultTokenLife = 10 * time.Minute

// SubscriptionToken issues a subscription token (PROTOCOL.md §4.10) that
// edges requiring tokens accept until life from now, for a random viewer
// id.
func (i *Issuer) SubscriptionToken(life time.Duration) ([]byte, error) {
	now, err := i.clock.Now()
	if err != nil {
		return nil, fmt.Errorf("subscription token: %w", err)
	}
	t := wire.Token{NotAfter: now.Latest + int64(life)}
	rand.Read(t.Viewer[:])
	return seal.SignToken(i.signer, &t), nil
}

// NewIssuer loads the store's signing key and events.
func NewIssuer(store *keystore.Store, clock ptp.Clock, log *slog.Logger) (*Issuer, error) {
	signer, err := store.SigningKey()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	i := &Issuer{store: store, signer: signer, clock: clock, log: log,
		origins: make(map[uint32]*origin.Origin), events: make(map[uint32]*keystore.Event), cache: make(map[periodKey]*keystore.Period)}
	streams, err := store.Events()
	if err != nil {
		return nil, err
	}
	for _, s := range streams {
		if err := i.load(s); err != nil {
			return nil, err
		}
	}
	return i, nil
}

func (i *Issuer) load(stream uint32) error {
	ev, err := i.store.Event(stream)
	if err != nil {
		return err
	}
	o, err := origin.New(i.signer, ev.Master)
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.events[stream], i.origins[stream] = ev, o
	i.mu.Unlock()
	return nil
}

// AddEvent stores a new event and starts issuing it.
func (i *Issuer) AddEvent(ev *keystore.Event) error {
	if err := i.store.CreateEvent(ev); err != nil {
		return err
	}
	return i.load(ev.Stream)
}

// PublicKey is the origin's signing key, which edges and receivers trust.
func (i *Issuer) PublicKey() ed25519.PublicKey { return i.signer.Public().(ed25519.PublicKey) }

// Event returns the stream's event, or nil.
func (i *Issuer) Event(stream uint32) *keystore.Event {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.events[stream]
}

// Streams lists the events' streams in ascending order, so that the
// session description and every loop over them are the same each time.
func (i *Issuer) Streams() []uint32 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Sorted(maps.Keys(i.events))
}

// Run issues due periods every tick until ctx ends.
func (i *Issuer) Run(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if err := i.IssueDue(); err != nil {
			i.log.Error("issue periods", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// IssueDue issues every event's periods whose announce time has come.
func (i *Issuer) IssueDue() error {
	now, err := i.clock.Now()
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range i.Streams() {
		ev := i.Event(s)
		first, end := ev.Schedule.Due(now.Mid())
		for p := first; p < end; p++ {
			if _, err := i.Period(s, p); err != nil {
				errs = append(errs, err)
			}
		}
		i.forget(s, first-min(first, wire.MaxCatchUp))
	}
	return errors.Join(errs...)
}

// forget drops cached periods of stream below period: they stay in the
// store, and nothing serves them any more.
func (i *Issuer) forget(stream uint32, below uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for k := range i.cache {
		if k.stream == stream && k.period < below {
			delete(i.cache, k)
		}
	}
}

// Period returns the stored period, issuing and storing it first if it
// has never been issued. Issuing happens only for periods not yet
// released by the schedule's clock; an old period never issued stays
// missing (ErrNotFound) rather than be made up after the fact.
func (i *Issuer) Period(stream uint32, period uint64) (*keystore.Period, error) {
	k := periodKey{stream, period}
	i.mu.Lock()
	p := i.cache[k]
	ev, o := i.events[stream], i.origins[stream]
	i.mu.Unlock()
	if p != nil {
		return p, nil
	}
	if ev == nil {
		return nil, fmt.Errorf("%w: stream %d", keystore.ErrNotFound, stream)
	}
	p, err := i.store.Period(stream, period)
	if errors.Is(err, keystore.ErrNotFound) {
		p, err = i.issue(ev, o, period)
	}
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	i.cache[k] = p
	i.mu.Unlock()
	return p, nil
}

func (i *Issuer) issue(ev *keystore.Event, o *origin.Origin, period uint64) (*keystore.Period, error) {
	at := ev.Schedule.At(period)
	now, err := i.clock.Now()
	if err != nil {
		return nil, err
	}
	// The best estimate decides, as for the rotation: the latest bound of
	// a loosely synchronized origin clock would refuse every period.
	if at.ReleaseAt <= now.Mid() {
		return nil, fmt.Errorf("%w: stream %d period %d was never issued and its release has passed", keystore.ErrNotFound, ev.Stream, period)
	}
	keys, err := o.NewContentKeys(max(ev.Keys, 1))
	if err != nil {
		return nil, err
	}
	b, err := o.Keys(ev.Stream, period, at, keys)
	if err != nil {
		return nil, err
	}
	p := &keystore.Period{Bundle: b, Keys: keys, IssuedAt: time.Now().UTC()}
	if err := i.store.PutPeriod(p); errors.Is(err, keystore.ErrExists) {
		// Another request issued it first: the stored one stands.
		return i.store.Period(ev.Stream, period)
	} else if err != nil {
		return nil, err
	}
	i.log.Debug("issued", "stream", ev.Stream, "period", period)
	return p, nil
}

// Window returns the stored periods an edge or packager polling at now
// should hold for stream: up to wire.MaxCatchUp released ones (those that
// were issued) and every one due for announcement, from `from` on.
func (i *Issuer) Window(stream uint32, from uint64) ([]*keystore.Period, error) {
	ev := i.Event(stream)
	if ev == nil {
		return nil, fmt.Errorf("%w: stream %d", keystore.ErrNotFound, stream)
	}
	now, err := i.clock.Now()
	if err != nil {
		return nil, err
	}
	first, end := ev.Schedule.Due(now.Mid())
	lo := max(from, first-min(first, wire.MaxCatchUp))
	var out []*keystore.Period
	for p := lo; p < end; p++ {
		rec, err := i.Period(stream, p)
		if errors.Is(err, keystore.ErrNotFound) {
			continue // its release passed before this origin issued it
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}
