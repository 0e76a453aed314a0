package keyserver

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// Refusals of PeriodWithKIDs, besides keystore.ErrNotFound for a period
// released without ever being issued.
var (
	// ErrKIDConflict: the period is issued, and its KIDs are not the ones
	// asked for. A period never gets a second key for a track.
	ErrKIDConflict = errors.New("keyserver: period issued with other KIDs")
	// ErrTooFarAhead: the period's release is more than Horizon away.
	ErrTooFarAhead = errors.New("keyserver: period too far ahead")
)

// Horizon is how far ahead of its release an encryptor may have a period
// issued with its own KIDs, or a publisher a resource: enough for any
// packager's look-ahead, small enough that a mistaken index or instant
// cannot fill the store with a day of periods.
const Horizon = time.Hour

// Issuer issues each stored event's periods ahead of time: a period is
// generated and durably stored before anything can serve it, and a stored
// period is what is served ever after.
type Issuer struct {
	store  keystore.State
	signer ed25519.PrivateKey
	clock  ptp.Clock
	log    *slog.Logger

	issued atomic.Uint64 // periods issued and stored by this process
	lost   atomic.Uint64 // periods issued here but stored first by another request or replica
	// storeErr is the error of the last look at the store's events (nil:
	// it answered), for readiness.
	storeErr atomic.Pointer[error]

	mu      sync.Mutex
	origins map[uint32]*origin.Origin
	events  map[uint32]*keystore.Event
	cache   map[periodKey]*keystore.Period
	// resources indexes each resource stream's published periods in
	// period order; publish serializes Publish.
	resources map[uint32][]resource
	publish   sync.Mutex
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
// edges requiring tokens accept until life from now, bound to viewer (a
// JWT's sub, or a lab token's name) by its ViewerID.
func (i *Issuer) SubscriptionToken(life time.Duration, viewer string) ([]byte, error) {
	now, err := i.clock.Now()
	if err != nil {
		return nil, fmt.Errorf("subscription token: %w", err)
	}
	t := wire.Token{NotAfter: now.Latest + int64(life), Viewer: ViewerID(viewer)}
	return seal.SignToken(i.signer, &t), nil
}

// ViewerID is the viewer id a subscription token carries for viewer: the
// first 8 bytes of SHA-256("embargo/v1 viewer\0" ‖ viewer). Every token of
// one viewer carries the same id, whichever replica issued it; an edge
// sees a pseudonym, and the service, which knows its viewers, can tell
// whose a token is.
func ViewerID(viewer string) [8]byte {
	h := sha256.New()
	h.Write([]byte("embargo/v1 viewer\x00"))
	h.Write([]byte(viewer))
	return [8]byte(h.Sum(nil))
}

// NewIssuer loads the store's signing key and events. Replicas sharing one
// store (package etcdstore) each run an Issuer: whichever issues a period
// first stores it, and every replica serves that one.
func NewIssuer(store keystore.State, clock ptp.Clock, log *slog.Logger) (*Issuer, error) {
	signer, err := store.SigningKey()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	i := &Issuer{store: store, signer: signer, clock: clock, log: log,
		origins: make(map[uint32]*origin.Origin), events: make(map[uint32]*keystore.Event), cache: make(map[periodKey]*keystore.Period),
		resources: make(map[uint32][]resource)}
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
	var published []resource
	if ev.Resources {
		if published, err = i.readResources(stream, 0); err != nil {
			return err
		}
	}
	i.mu.Lock()
	i.events[stream], i.origins[stream] = ev, o
	if ev.Resources {
		i.resources[stream] = published
	}
	i.mu.Unlock()
	return nil
}

// AddEvent stores a new event and starts issuing it. It refuses more
// content keys per period than packager documents can give each its own
// content key context (cpix.MaxTrackKeys). If another replica stored the
// stream's event first, it issues that one and returns an error wrapping
// keystore.ErrExists.
func (i *Issuer) AddEvent(ev *keystore.Event) error {
	if ev.Keys < 0 || ev.Keys > cpix.MaxTrackKeys {
		return fmt.Errorf("stream %d: %d content keys per period; use 1 (all tracks) or 2 (video, audio): CPIX allows one key per track type and period", ev.Stream, ev.Keys)
	}
	err := i.store.CreateEvent(ev)
	if err != nil && !errors.Is(err, keystore.ErrExists) {
		return err
	}
	if lerr := i.load(ev.Stream); lerr != nil {
		return lerr
	}
	return err
}

// eventOrigin returns the stream's event and its origin, or nils.
func (i *Issuer) eventOrigin(stream uint32) (*keystore.Event, *origin.Origin) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.events[stream], i.origins[stream]
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

// Run issues due periods every tick until ctx ends, first taking up
// every event another replica sharing the store created.
func (i *Issuer) Run(ctx context.Context, tick time.Duration) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		err := i.Refresh()
		i.storeErr.Store(&err)
		if err != nil {
			i.log.Error("load events", "err", err)
		}
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

// Refresh loads the events the store holds that this issuer does not: a
// replica started with fewer streams, or before another created one,
// serves and issues them as well.
func (i *Issuer) Refresh() error {
	streams, err := i.store.Events()
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range streams {
		if i.Event(s) == nil {
			if err := i.load(s); err != nil {
				errs = append(errs, err)
			} else {
				i.log.Info("stream created by another replica", "stream", s)
			}
		}
	}
	return errors.Join(errs...)
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
		if ev.Resources {
			continue
		}
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
	return i.period(stream, period, nil)
}

// period is Period, issuing under kids (if not nil) a period not yet
// issued.
func (i *Issuer) period(stream uint32, period uint64, kids [][16]byte) (*keystore.Period, error) {
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
		p, err = i.issue(ev, o, period, kids)
	}
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	i.cache[k] = p
	i.mu.Unlock()
	return p, nil
}

// PeriodWithKIDs returns the period with the KIDs an encryptor chose
// (SPEKE), one per track in cpix.TrackOf order. A period not yet issued
// is issued now with those KIDs and fresh key values, if its release is
// still ahead and within Horizon (else keystore.ErrNotFound or
// ErrTooFarAhead); an issued period is returned only if its KIDs are
// those (else ErrKIDConflict): asking twice gets the same keys, and no
// period ever has two keys for one track.
func (i *Issuer) PeriodWithKIDs(stream uint32, period uint64, kids [][16]byte) (*keystore.Period, error) {
	ev := i.Event(stream)
	if ev == nil {
		return nil, fmt.Errorf("%w: stream %d", keystore.ErrNotFound, stream)
	}
	if n := max(ev.Keys, 1); len(kids) != n {
		return nil, fmt.Errorf("%w: stream %d has %d key(s) per period, %d asked for", ErrKIDConflict, stream, n, len(kids))
	}
	p, err := i.period(stream, period, kids)
	if err != nil {
		return nil, err
	}
	if len(p.Keys) != len(kids) {
		return nil, fmt.Errorf("%w: stream %d period %d was issued with %d key(s), %d asked for", ErrKIDConflict, stream, period, len(p.Keys), len(kids))
	}
	for j, k := range p.Keys {
		if k.KID != kids[j] {
			return nil, fmt.Errorf("%w: stream %d period %d was issued with KID %x for track %d, not %x", ErrKIDConflict, stream, period, k.KID, j, kids[j])
		}
	}
	return p, nil
}

// issue makes and stores a period, with fresh keys under kids if given
// (an encryptor's, at most Horizon ahead), else under fresh KIDs.
func (i *Issuer) issue(ev *keystore.Event, o *origin.Origin, period uint64, kids [][16]byte) (*keystore.Period, error) {
	if ev.Resources {
		return nil, fmt.Errorf("%w: stream %d period %d: a resource stream's periods are only what publishers submit", keystore.ErrNotFound, ev.Stream, period)
	}
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
	if kids != nil && at.ReleaseAt-now.Mid() > int64(Horizon) {
		return nil, fmt.Errorf("%w: stream %d period %d is released in %v, beyond %v", ErrTooFarAhead, ev.Stream, period, time.Duration(at.ReleaseAt-now.Mid()), Horizon)
	}
	keys, err := o.NewContentKeys(max(ev.Keys, 1))
	if err != nil {
		return nil, err
	}
	for j := range kids {
		keys[j].KID = kids[j]
	}
	b, err := o.Keys(ev.Stream, period, at, keys)
	if err != nil {
		return nil, err
	}
	p := &keystore.Period{Bundle: b, Keys: keys, IssuedAt: time.Now().UTC()}
	if err := i.store.PutPeriod(p); errors.Is(err, keystore.ErrExists) {
		// Another request or replica issued it first: the stored one stands.
		i.lost.Add(1)
		return i.store.Period(ev.Stream, period)
	} else if err != nil {
		return nil, err
	}
	i.issued.Add(1)
	i.log.Debug("issued", "stream", ev.Stream, "period", period)
	return p, nil
}

// Issued is how many periods this process issued and stored.
func (i *Issuer) Issued() uint64 { return i.issued.Load() }

// Lost is how many periods this process issued but found already stored
// by another request or replica, whose keys then stood.
func (i *Issuer) Lost() uint64 { return i.lost.Load() }

// StoreStatus says whether the store answered Run's last look at it, and
// if not why: a replica that cannot reach the shared store can serve
// nothing new, and should leave the rotation.
func (i *Issuer) StoreStatus() (ok bool, reason string) {
	p := i.storeErr.Load()
	switch {
	case p == nil:
		return false, "not yet read"
	case *p != nil:
		return false, (*p).Error()
	}
	return true, "answering"
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
	if ev.Resources {
		return i.resourceWindow(ev, from, now.Mid())
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
