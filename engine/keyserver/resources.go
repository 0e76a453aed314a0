package keyserver

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/embargo-live/embargo/internal/pki"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/wire"
)

// Refusals of Publish, besides ErrTooFarAhead and keystore.ErrNotFound
// (no such stream).
var (
	// ErrNotResources: the stream rotates keys; resources go to a stream
	// created for them.
	ErrNotResources = errors.New("keyserver: not a resource stream")
	// ErrOversized: empty, or more than MaxResource bytes.
	ErrOversized = errors.New("keyserver: resource size out of range")
	// ErrLate: releaseAt is less than the stream's lead away, or not after
	// the stream's last resource.
	ErrLate = errors.New("keyserver: resource too late")
	// ErrDuplicate: the same bytes for the same instant are already
	// published; the error names their period.
	ErrDuplicate = errors.New("keyserver: resource already published")
	// ErrBusy: MaxPending resources of the stream already wait for release.
	ErrBusy = errors.New("keyserver: too many resources pending")
	// ErrRequest: a submission that does not parse.
	ErrRequest = errors.New("keyserver: bad publish request")
)

// MaxResource is the largest resource: what one ANNOUNCE body holds beside
// its fixed fields, AEAD tag and signature (PROTOCOL.md §3.2).
const MaxResource = wire.MaxBody - wire.MinBodyLen

// MaxPending is the most resources of one stream waiting for release:
// receivers take periods up to 2·wire.MaxAnnounceLead ahead of the newest
// they hold, and edges carousel every pending one.
const MaxPending = wire.MaxAnnounceLead

// resource is what Publish remembers of a published period.
type resource struct {
	period    uint64
	releaseAt int64
	sum       [sha256.Size]byte
}

// readResources reads stream's published periods from `from` on.
func (i *Issuer) readResources(stream uint32, from uint64) ([]resource, error) {
	ps, err := i.store.Periods(stream, from)
	if err != nil {
		return nil, err
	}
	out := make([]resource, 0, len(ps))
	for _, n := range ps {
		p, err := i.store.Period(stream, n)
		if err != nil {
			return nil, err
		}
		out = append(out, resource{period: n, releaseAt: p.Bundle.ReleaseAt, sum: sha256.Sum256(p.Resource)})
	}
	return out, nil
}

// syncResources adds to stream's index what other replicas sharing the
// store published since.
func (i *Issuer) syncResources(stream uint32) error {
	last := func() (uint64, bool) {
		published := i.resources[stream]
		if len(published) == 0 {
			return 0, false
		}
		return published[len(published)-1].period, true
	}
	i.mu.Lock()
	n, any := last()
	i.mu.Unlock()
	from := uint64(0)
	if any {
		from = n + 1
	}
	add, err := i.readResources(stream, from)
	if err != nil || len(add) == 0 {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	// A concurrent sync may have added some already.
	for _, r := range add {
		if n, any := last(); !any || r.period > n {
			i.resources[stream] = append(i.resources[stream], r)
		}
	}
	return nil
}

// Publish stores payload durably as the next period of resource stream
// stream, released at releaseAt (TAI ns) and presented the stream's
// present delay later, and returns it. Edges get it as any period, from
// one lead before releaseAt. It refuses (one sentinel each, with the
// reason and the fix): a stream that rotates keys, an empty or oversized
// payload, a releaseAt less than the stream's lead away or not after the
// stream's last resource, one beyond Horizon, the same bytes for the same
// instant again, and more than MaxPending resources waiting.
//
// Replicas sharing a store number one stream's resources as one: each
// first catches up with what the others published, and a replica that
// loses the race for a period number catches up and tries the next.
func (i *Issuer) Publish(stream uint32, releaseAt int64, payload []byte) (*keystore.Period, error) {
	i.publish.Lock()
	defer i.publish.Unlock()
	for try := 1; ; try++ {
		p, err := i.publishOnce(stream, releaseAt, payload)
		if !errors.Is(err, keystore.ErrExists) || try == maxPublishTries {
			return p, err
		}
	}
}

// maxPublishTries bounds how often Publish loses the race for a period
// number to other replicas before it gives up with keystore.ErrExists.
const maxPublishTries = 8

func (i *Issuer) publishOnce(stream uint32, releaseAt int64, payload []byte) (*keystore.Period, error) {
	ev, o := i.eventOrigin(stream)
	switch {
	case ev == nil:
		return nil, fmt.Errorf("%w: stream %d", keystore.ErrNotFound, stream)
	case !ev.Resources:
		return nil, fmt.Errorf("%w: stream %d rotates keys; publish to a resource stream (embargo origin -resource-streams)", ErrNotResources, stream)
	case len(payload) == 0 || len(payload) > MaxResource:
		return nil, fmt.Errorf("%w: %d bytes; a resource is 1 to %d bytes", ErrOversized, len(payload), MaxResource)
	}
	if err := i.syncResources(stream); err != nil {
		return nil, err
	}
	i.mu.Lock()
	published := i.resources[stream]
	i.mu.Unlock()
	sum := sha256.Sum256(payload)
	for _, r := range published {
		if r.releaseAt == releaseAt && r.sum == sum {
			return nil, fmt.Errorf("%w: stream %d period %d holds these bytes for this instant", ErrDuplicate, stream, r.period)
		}
	}
	now, err := i.clock.Now()
	if err != nil {
		return nil, err
	}
	ahead := time.Duration(releaseAt - now.Mid())
	lead := ev.Schedule.Lead
	pending := 0
	for _, r := range published {
		if r.releaseAt > now.Mid() {
			pending++
		}
	}
	var last *resource
	if len(published) > 0 {
		last = &published[len(published)-1]
	}
	switch {
	case ahead < lead:
		return nil, fmt.Errorf("%w: releaseAt is %v away; submit at least the stream's lead (%v) ahead, so that edges carousel it before its release", ErrLate, ahead.Round(time.Millisecond), lead)
	case ahead > Horizon:
		return nil, fmt.Errorf("%w: releaseAt is %v away, beyond %v", ErrTooFarAhead, ahead.Round(time.Second), Horizon)
	case last != nil && releaseAt <= last.releaseAt:
		return nil, fmt.Errorf("%w: releaseAt %d is not after stream %d period %d's %d; resources of a stream are released in the order they are published", ErrLate, releaseAt, stream, last.period, last.releaseAt)
	case pending >= MaxPending:
		return nil, fmt.Errorf("%w: stream %d has %d resources waiting for release, the most it holds", ErrBusy, stream, pending)
	}
	var period uint64
	if last != nil {
		period = last.period + 1
	}
	at := origin.Instants{ReleaseAt: releaseAt, PresentAt: releaseAt + int64(ev.Schedule.PresentDelay)}
	b, err := o.Resource(stream, period, at, payload)
	if err != nil {
		return nil, err
	}
	p := &keystore.Period{Bundle: b, Resource: append([]byte(nil), payload...), IssuedAt: time.Now().UTC()}
	if err := i.store.PutPeriod(p); err != nil {
		return nil, err
	}
	i.mu.Lock()
	// An edge's poll may have synced it into the index already.
	if rs := i.resources[stream]; len(rs) == 0 || rs[len(rs)-1].period < period {
		i.resources[stream] = append(rs, resource{period: period, releaseAt: releaseAt, sum: sum})
	}
	i.cache[periodKey{stream, period}] = p
	i.mu.Unlock()
	// Edges are served at most the last wire.MaxCatchUp released and the
	// MaxPending waiting; older ones stay in the store only.
	i.forget(stream, period-min(period, wire.MaxCatchUp+MaxPending))
	i.log.Info("published", "stream", stream, "period", period, "bytes", len(payload), "releaseAt", releaseAt)
	return p, nil
}

// resourceWindow is Window for a resource stream: from `from` on, the
// published periods whose announce time (releaseAt − lead) has come, less
// those released before the last wire.MaxCatchUp released ones.
func (i *Issuer) resourceWindow(ev *keystore.Event, from uint64, now int64) ([]*keystore.Period, error) {
	if err := i.syncResources(ev.Stream); err != nil {
		return nil, err
	}
	i.mu.Lock()
	published := i.resources[ev.Stream]
	i.mu.Unlock()
	released := 0
	for _, r := range published {
		if r.releaseAt <= now {
			released++
		}
	}
	var out []*keystore.Period
	for j, r := range published {
		if r.period < from || r.releaseAt-int64(ev.Schedule.Lead) > now || (r.releaseAt <= now && j < released-wire.MaxCatchUp) {
			continue
		}
		p, err := i.Period(ev.Stream, r.period)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// PublishRequest is a publisher's submission: the bytes and when to
// release them.
type PublishRequest struct {
	ReleaseAt int64 // TAI ns
	Payload   []byte
}

// ParsePublish reads a submission: releaseAt, the query parameter, a
// canonical decimal TAI ns instant (no sign, no leading zero), and the
// body, 1 to MaxResource bytes, as is. Errors wrap ErrOversized or
// ErrRequest.
func ParsePublish(releaseAt string, body []byte) (*PublishRequest, error) {
	at, err := strconv.ParseInt(releaseAt, 10, 64)
	if err != nil || at < 0 || strconv.FormatInt(at, 10) != releaseAt {
		return nil, fmt.Errorf("%w: releaseAt %.30q: want TAI nanoseconds, a decimal integer", ErrRequest, releaseAt)
	}
	if len(body) == 0 || len(body) > MaxResource {
		return nil, fmt.Errorf("%w: %d bytes; a resource is 1 to %d bytes", ErrOversized, len(body), MaxResource)
	}
	return &PublishRequest{ReleaseAt: at, Payload: body}, nil
}

// Published is the answer to a submission.
type Published struct {
	Stream    uint32 `json:"stream"`
	Period    uint64 `json:"period"`
	ReleaseAt int64  `json:"releaseAt"` // TAI ns
	PresentAt int64  `json:"presentAt"` // TAI ns
	Bytes     int    `json:"bytes"`
}

// publishResource serves POST /v1/streams/{stream}/resources?releaseAt=N
// for a publisher's certificate.
func (h *Handler) publishResource(w http.ResponseWriter, r *http.Request) {
	stream, ok := h.caller(w, r, pki.RolePublisher)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxResource))
	if err != nil {
		h.fail(w, r, http.StatusRequestEntityTooLarge, "publish-refused", fmt.Errorf("%w: over %d bytes; a resource is 1 to %d bytes", ErrOversized, MaxResource, MaxResource))
		return
	}
	req, err := ParsePublish(r.URL.Query().Get("releaseAt"), body)
	if err == nil {
		var p *keystore.Period
		if p, err = h.cfg.Issuer.Publish(stream, req.ReleaseAt, req.Payload); err == nil {
			h.count("published")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(Published{Stream: p.Bundle.Stream, Period: p.Bundle.Period, ReleaseAt: p.Bundle.ReleaseAt, PresentAt: p.Bundle.PresentAt, Bytes: len(p.Resource)})
			return
		}
	}
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrRequest), errors.Is(err, ErrNotResources):
		code = http.StatusBadRequest
	case errors.Is(err, keystore.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrOversized):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrLate), errors.Is(err, ErrTooFarAhead):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, ErrDuplicate):
		code = http.StatusConflict
	case errors.Is(err, ErrBusy):
		code = http.StatusTooManyRequests
	}
	h.fail(w, r, code, "publish-refused", err)
}
