package licproxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// Defaults for Config.
const (
	// DefaultMaxWait is longer than any announce lead, so a player that
	// asks as soon as it sees a key id is answered at the release.
	DefaultMaxWait    = 30 * time.Second
	DefaultPeriods    = 64
	DefaultMaxWaiters = 1024
	// DefaultMaxWaitersPerClient leaves most of MaxWaiters to others
	// whatever one client does.
	DefaultMaxWaitersPerClient = 64
	// maxGone bounds the evicted key ids remembered, so that a request for
	// one fails at once instead of waiting MaxWait for nothing.
	maxGone = 4096
)

// Config configures a Proxy. Zero values mean the defaults.
type Config struct {
	// MaxWait is how long a request waits for its keys' release before it
	// is answered 404 "not-released". The http.Server's WriteTimeout must
	// be longer.
	MaxWait time.Duration
	// Periods is how many released periods' keys are held; older ones are
	// evicted and requests for them answered 410 "evicted".
	Periods int
	// MaxWaiters bounds the requests waiting at once, and
	// MaxWaitersPerClient those of one client (its remote IP address and
	// Origin header); beyond either, 503.
	MaxWaiters, MaxWaitersPerClient int
	// AllowOrigins are the web origins (scheme://host[:port]) whose pages
	// may use the proxy: a request from one is answered with CORS
	// headers naming it, a request from any other origin refused 403
	// "forbidden-origin". A request without an Origin header (a native
	// player, a same-origin page) is served without CORS headers.
	AllowOrigins []string
	// Hosts are the names the proxy answers to in the Host header, e.g.
	// "127.0.0.1:8080" and "localhost:8080"; any other is refused 421
	// "bad-host", so a web page cannot reach the proxy by rebinding its
	// own DNS name to the loopback address. Empty: any (not for service).
	Hosts  []string
	Logger *slog.Logger
}

// Proxy is a W3C Clear Key licence server for a browser player on the
// device, fed by the receiver. A request is answered with the keys it
// names once every one of them has been released, and not before: the
// proxy holds no key until Deliver gives it one. Until then the request
// waits, up to MaxWait or until the client goes away.
//
// A Proxy is safe for concurrent use; Deliver may be the receiver's
// OnEvent directly.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	counts clearkey.Counters

	mu      sync.Mutex
	live    map[[wire.KIDLen]byte]held
	periods []periodKeys // released, oldest first
	gone    map[[wire.KIDLen]byte]uint64
	ring    []goneKID // gone's entries in eviction order
	next    int       // ring's oldest entry once it is full
	seq     uint64
	// changed is closed, and replaced, whenever keys are released: one
	// close wakes every waiting request, which then looks again.
	changed chan struct{}
	waiting int
	clients map[client]int // waiting requests per client
}

// client is who a waiting request counts against.
type client struct {
	ip     string
	origin string
}

type periodID struct {
	stream uint32
	period uint64
}

type periodKeys struct {
	id   periodID
	kids [][wire.KIDLen]byte
}

type held struct {
	key [wire.ContentKeyLen]byte
	id  periodID
}

// goneKID is an evicted key id; seq tells a later eviction of the same id
// from this one.
type goneKID struct {
	kid [wire.KIDLen]byte
	seq uint64
}

// Stats is a snapshot of a Proxy.
type Stats struct {
	Outcomes map[string]uint64 // requests by outcome name (see clearkey.Outcome)
	Waiting  int               // requests waiting now
	Periods  int               // released periods held
	Keys     int               // content keys held
}

var _ http.Handler = (*Proxy)(nil)

// New returns a Proxy holding no keys.
func New(cfg Config) *Proxy {
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.Periods <= 0 {
		cfg.Periods = DefaultPeriods
	}
	if cfg.MaxWaiters <= 0 {
		cfg.MaxWaiters = DefaultMaxWaiters
	}
	if cfg.MaxWaitersPerClient <= 0 {
		cfg.MaxWaitersPerClient = DefaultMaxWaitersPerClient
	}
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		live:    make(map[[wire.KIDLen]byte]held),
		gone:    make(map[[wire.KIDLen]byte]uint64),
		changed: make(chan struct{}),
		clients: make(map[client]int),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p
}

// Deliver records a released period's content keys and answers the
// requests waiting for them. Periods without keys (opaque resources) and
// periods already held are ignored. The oldest period beyond
// Config.Periods is evicted.
func (p *Proxy) Deliver(ev receiver.Event) {
	if len(ev.Keys) == 0 {
		return
	}
	id := periodID{ev.Stream, ev.Period}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.periods {
		if p.periods[i].id == id {
			return
		}
	}
	pk := periodKeys{id: id, kids: make([][wire.KIDLen]byte, len(ev.Keys))}
	for i, k := range ev.Keys {
		p.live[k.KID] = held{key: k.Key, id: id}
		delete(p.gone, k.KID)
		pk.kids[i] = k.KID
	}
	p.periods = append(p.periods, pk)
	for len(p.periods) > p.cfg.Periods {
		p.evictOldest()
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.log.Debug("keys released", "stream", ev.Stream, "period", ev.Period, "keys", len(ev.Keys))
}

func (p *Proxy) evictOldest() {
	old := p.periods[0]
	copy(p.periods, p.periods[1:])
	p.periods[len(p.periods)-1] = periodKeys{}
	p.periods = p.periods[:len(p.periods)-1]
	for _, kid := range old.kids {
		// A key id reused by a newer period stays with that period.
		if h, ok := p.live[kid]; ok && h.id == old.id {
			delete(p.live, kid)
			p.bury(kid)
		}
	}
}

func (p *Proxy) bury(kid [wire.KIDLen]byte) {
	p.seq++
	e := goneKID{kid: kid, seq: p.seq}
	if len(p.ring) < maxGone {
		p.ring = append(p.ring, e)
	} else {
		if old := p.ring[p.next]; p.gone[old.kid] == old.seq {
			delete(p.gone, old.kid)
		}
		p.ring[p.next] = e
		p.next = (p.next + 1) % maxGone
	}
	p.gone[kid] = e.seq
}

// Stats returns a snapshot of the proxy's counters and holdings.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Outcomes: p.counts.Snapshot(), Waiting: p.waiting, Periods: len(p.periods), Keys: len(p.live)}
}

// ServeHTTP implements http.Handler: POST a Clear Key licence request,
// receive a Clear Key licence; OPTIONS answers a CORS preflight.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if len(p.cfg.Hosts) > 0 && !slices.Contains(p.cfg.Hosts, r.Host) {
		p.log.Debug("licence request for another host", "host", r.Host, "remote", r.RemoteAddr)
		p.fail(w, http.StatusMisdirectedRequest, clearkey.BadHost, nil)
		return
	}
	origin := r.Header.Get("Origin")
	if origin != "" {
		h.Set("Vary", "Origin")
		if !slices.Contains(p.cfg.AllowOrigins, origin) {
			p.log.Debug("licence request from an origin not allowed", "origin", origin, "remote", r.RemoteAddr)
			p.fail(w, http.StatusForbidden, clearkey.ForbiddenOrigin, nil)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		p.counts.Add(clearkey.Preflight)
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "POST, OPTIONS")
		p.fail(w, http.StatusMethodNotAllowed, clearkey.BadMethod, nil)
		return
	}
	body, err := clearkey.ReadBody(w, r)
	var req clearkey.Request
	if err == nil {
		req, err = clearkey.ParseRequest(body)
	}
	if err != nil {
		o, status := clearkey.Refusal(err)
		p.log.Debug("licence request refused", "remote", r.RemoteAddr, "err", err)
		p.fail(w, status, o, nil)
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	keys, missing, o := p.await(r.Context(), client{ip, origin}, unique(req.KIDs))
	switch o {
	case clearkey.Granted:
		lic, err := clearkey.MarshalLicence(keys, req.Type)
		if err != nil { // cannot happen: keys are 1..MaxKIDs
			p.fail(w, http.StatusInternalServerError, clearkey.BadRequest, nil)
			return
		}
		p.counts.Add(clearkey.Granted)
		clearkey.WriteJSON(w, http.StatusOK, lic)
	case clearkey.Evicted:
		p.fail(w, http.StatusGone, o, missing)
	case clearkey.Busy:
		h.Set("Retry-After", "1")
		p.fail(w, http.StatusServiceUnavailable, o, missing)
	default: // not released in time, or the client left
		p.fail(w, http.StatusNotFound, o, missing)
	}
	p.log.Debug("licence request", "remote", r.RemoteAddr, "outcome", o.String(), "kids", len(req.KIDs))
}

func (p *Proxy) fail(w http.ResponseWriter, status int, o clearkey.Outcome, kids [][wire.KIDLen]byte) {
	p.counts.Add(o)
	clearkey.WriteError(w, status, o, kids)
}

// await waits until every kid is released and returns their keys, in
// order; otherwise the outcome, and the kids that were missing or evicted.
// It starts no goroutine: the wait is the handler's own.
func (p *Proxy) await(ctx context.Context, who client, kids [][wire.KIDLen]byte) ([]seal.ContentKey, [][wire.KIDLen]byte, clearkey.Outcome) {
	p.mu.Lock()
	keys, missing, gone := p.lookup(kids)
	changed := p.changed
	switch {
	case len(gone) > 0:
		p.mu.Unlock()
		return nil, gone, clearkey.Evicted
	case len(missing) == 0:
		p.mu.Unlock()
		return keys, nil, clearkey.Granted
	case p.waiting >= p.cfg.MaxWaiters || p.clients[who] >= p.cfg.MaxWaitersPerClient:
		p.mu.Unlock()
		return nil, missing, clearkey.Busy
	}
	p.waiting++
	p.clients[who]++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.waiting--
		if p.clients[who]--; p.clients[who] == 0 {
			delete(p.clients, who)
		}
		p.mu.Unlock()
	}()

	timer := time.NewTimer(p.cfg.MaxWait)
	defer timer.Stop()
	for {
		final := clearkey.Granted
		select {
		case <-changed:
		case <-timer.C:
			final = clearkey.NotReleased
		case <-ctx.Done():
			final = clearkey.Cancelled
		}
		p.mu.Lock()
		keys, missing, gone = p.lookup(kids)
		changed = p.changed
		p.mu.Unlock()
		switch {
		case len(gone) > 0:
			return nil, gone, clearkey.Evicted
		case len(missing) == 0:
			// Released just as the wait ran out: the keys are there, serve them.
			return keys, nil, clearkey.Granted
		case final != clearkey.Granted:
			return nil, missing, final
		}
	}
}

// lookup splits kids into the keys held, the kids not yet released and
// the kids evicted. Called with p.mu held.
func (p *Proxy) lookup(kids [][wire.KIDLen]byte) (keys []seal.ContentKey, missing, gone [][wire.KIDLen]byte) {
	keys = make([]seal.ContentKey, 0, len(kids))
	for _, kid := range kids {
		if h, ok := p.live[kid]; ok {
			keys = append(keys, seal.ContentKey{KID: kid, Key: h.key})
		} else if _, ok := p.gone[kid]; ok {
			gone = append(gone, kid)
		} else {
			missing = append(missing, kid)
		}
	}
	return keys, missing, gone
}

// unique drops repeated kids, keeping the first of each: a licence names
// each key once.
func unique(kids [][wire.KIDLen]byte) [][wire.KIDLen]byte {
	out := kids[:0:0]
	seen := make(map[[wire.KIDLen]byte]bool, len(kids))
	for _, k := range kids {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
