package poller

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/ptp"
)

// maxDocument bounds a CPIX response an edge will read.
const maxDocument = 16 << 20

// Defaults for Poller.
const (
	DefaultInterval = time.Second
	// DefaultMaxBackoff is shorter than an origin's usual announce lead,
	// so that an edge notices an origin back before it misses a period.
	DefaultMaxBackoff = 4 * time.Second
)

// Poller is an edge fetching release bundles from the origin over mutual
// TLS.
type Poller struct {
	Origin string // base URL, e.g. https://origin.example:8443
	// Origins, if set, are the origin's replicas, failed over between
	// (fetch.Origins); Origin is then unused.
	Origins  *fetch.Origins
	Streams  []uint32
	Client   *http.Client    // with the edge's client certificate
	Key      *rsa.PrivateKey // the edge certificate's key: CPIX is encrypted to it
	Interval time.Duration   // between polls (default DefaultInterval)
	// MaxBackoff bounds the wait after failed polls (default
	// DefaultMaxBackoff): after k failures in a row the poller waits
	// Interval·2^k, at most MaxBackoff, times a random factor in [½, 1],
	// so that edges an origin outage stopped together do not return
	// together.
	MaxBackoff time.Duration
	// Start, if set, runs before the first poll, retried with the same
	// backoff until it succeeds (an edge learns the origin's key there).
	Start func(ctx context.Context) error
	// Clock decides when a bundle the edge refused as busy is missed: at
	// its releaseAt by the clock's earliest time (default: the system
	// clock, ptp.SystemTAI).
	Clock  ptp.Clock
	Logger *slog.Logger
	// Jitter returns a random factor in [0, 1) (default math/rand/v2);
	// tests fix it.
	Jitter func() float64

	once   sync.Once
	single *fetch.Origins // Origin alone, when Origins is nil

	documents, refused, added, rejected, fetchErrs, missed atomic.Uint64
	failing                                                atomic.Int64 // failed polls in a row
	lastFetch                                              atomic.Int64 // Unix ns of the last successful fetch; 0: none
}

// Stats count what the edge fetched and what it refused.
type Stats struct {
	Documents   uint64 // CPIX documents accepted
	Refused     uint64 // fetches that failed or documents refused whole
	FetchErrors uint64 // fetches that failed (origin down, TLS, HTTP errors)
	Added       uint64 // bundles the edge took
	Rejected    uint64 // bundles the edge refused for good (duplicates included)
	// Missed counts bundles the edge refused as busy until their
	// releaseAt passed: periods this edge will not release live.
	Missed uint64
	// Failing is how many polls in a row have failed (0 after a success).
	Failing int
	// Failovers counts moves from a failing origin replica to the next.
	Failovers uint64
	// LastFetch is when a fetch last succeeded (zero: never).
	LastFetch time.Time
}

// Stats returns a snapshot of the counters.
func (p *Poller) Stats() Stats {
	st := Stats{Documents: p.documents.Load(), Refused: p.refused.Load(), FetchErrors: p.fetchErrs.Load(), Added: p.added.Load(),
		Rejected: p.rejected.Load(), Missed: p.missed.Load(), Failing: int(p.failing.Load()), Failovers: p.origins().Failovers()}
	if ns := p.lastFetch.Load(); ns != 0 {
		st.LastFetch = time.Unix(0, ns)
	}
	return st
}

// origins are the replicas the poller fetches from.
func (p *Poller) origins() *fetch.Origins {
	if p.Origins != nil {
		return p.Origins
	}
	p.once.Do(func() { p.single = fetch.NewOrigins(p.Origin) })
	return p.single
}

// ClientTLS is an edge's or packager's TLS configuration toward the origin.
func ClientTLS(cert tls.Certificate, originCA *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: originCA}
}

// Run polls every stream until ctx ends, handing each new bundle to add
// (the edge's Add, which verifies the ANNOUNCE signature). A document that
// fails its checks is refused whole and logged; a failed poll is retried
// with exponential backoff and jitter. A bundle the edge refuses with
// edge.ErrBusy (temporarily full) is handed again at every poll until it
// is taken or its releaseAt passes; then it is counted and logged as
// missed. Any other refusal is final.
func (p *Poller) Run(ctx context.Context, add func(*bundle.Bundle) error) error {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p.Start != nil {
		for {
			err := p.Start(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n := p.failing.Add(1)
			p.fetchErrs.Add(1)
			d := p.backoff(int(n))
			log.Warn("edge: origin not reachable; retrying", "origin", p.origins().Current(), "failures", n, "retry in", d.Round(time.Millisecond), "err", err)
			if !sleep(ctx, d) {
				return ctx.Err()
			}
		}
		p.failing.Store(0)
	}
	next := make(map[uint32]uint64, len(p.Streams))
	var busy []*bundle.Bundle
	for {
		busy = p.retry(busy, add, log)
		failed := false
		for _, s := range p.Streams {
			bs, err := p.Fetch(ctx, s, next[s])
			if err != nil {
				if ctx.Err() == nil {
					failed = true
					p.refused.Add(1)
					log.Warn("edge: fetch bundles", "stream", s, "err", err)
				}
				continue
			}
			if bs != nil {
				p.documents.Add(1)
			}
			for _, b := range bs {
				busy = p.hand(b, add, busy, log)
				next[s] = max(next[s], b.Period+1)
			}
		}
		d := p.interval()
		if failed {
			d = p.backoff(int(p.failing.Load()))
		}
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// hand gives b to the edge and returns busy with b added if the edge was
// too busy to take it.
func (p *Poller) hand(b *bundle.Bundle, add func(*bundle.Bundle) error, busy []*bundle.Bundle, log *slog.Logger) []*bundle.Bundle {
	err := add(b)
	switch {
	case err == nil:
		p.added.Add(1)
	case errors.Is(err, edge.ErrBusy):
		log.Warn("edge: bundle refused for now, will retry", "stream", b.Stream, "period", b.Period, "err", err)
		busy = append(busy, b)
	default:
		p.rejected.Add(1)
		log.Debug("edge: bundle not added", "stream", b.Stream, "period", b.Period, "err", err)
	}
	return busy
}

// retry hands the edge again the bundles it was too busy to take, drops
// as missed those whose releaseAt has passed, and returns those still
// refused.
func (p *Poller) retry(busy []*bundle.Bundle, add func(*bundle.Bundle) error, log *slog.Logger) []*bundle.Bundle {
	if len(busy) == 0 {
		return busy
	}
	now := p.now()
	var still []*bundle.Bundle
	for _, b := range busy {
		if b.ReleaseAt <= now {
			p.missed.Add(1)
			log.Error("edge: period missed: the edge was too busy to take its bundle before releaseAt",
				"stream", b.Stream, "period", b.Period, "releaseAt", ptp.DefaultTAIOffset.ToTime(b.ReleaseAt))
			continue
		}
		still = p.hand(b, add, still, log)
	}
	return still
}

// now is the earliest the true time may be (TAI ns); on a clock that
// cannot say, a time no releaseAt has passed.
func (p *Poller) now() int64 {
	if p.Clock == nil {
		return ptp.SystemTAI()
	}
	r, err := p.Clock.Now()
	if err != nil || r.State == ptp.StateUnsynchronized {
		return math.MinInt64
	}
	return r.Earliest
}

func (p *Poller) interval() time.Duration {
	if p.Interval <= 0 {
		return DefaultInterval
	}
	return p.Interval
}

// backoff is the wait after n failures in a row.
func (p *Poller) backoff(n int) time.Duration {
	most := p.MaxBackoff
	if most <= 0 {
		most = DefaultMaxBackoff
	}
	d := p.interval()
	for range min(n, 32) {
		if d >= most {
			break
		}
		d *= 2
	}
	d = min(d, most)
	jitter := rand.Float64
	if p.Jitter != nil {
		jitter = p.Jitter
	}
	return d/2 + time.Duration(float64(d/2)*jitter())
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Fetch gets the stream's bundles from period from on.
func (p *Poller) Fetch(ctx context.Context, stream uint32, from uint64) ([]*bundle.Bundle, error) {
	bs, err := p.fetch(ctx, stream, from)
	if err != nil {
		p.failing.Add(1)
		return nil, err
	}
	p.failing.Store(0)
	p.lastFetch.Store(time.Now().UnixNano())
	return bs, nil
}

func (p *Poller) fetch(ctx context.Context, stream uint32, from uint64) ([]*bundle.Bundle, error) {
	body, _, err := p.origins().Do(ctx, p.Client, http.MethodGet, fmt.Sprintf("/v1/streams/%d/bundles?from=%d", stream, from), "", maxDocument)
	if err != nil {
		p.fetchErrs.Add(1)
		return nil, err
	}
	if body == nil {
		return nil, nil // nothing new
	}
	bs, err := cpix.DecodeBundles(body, p.Key)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if b.Stream != stream {
			return nil, fmt.Errorf("origin sent stream %d for stream %d", b.Stream, stream)
		}
	}
	return bs, nil
}
