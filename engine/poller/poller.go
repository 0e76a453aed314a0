package poller

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/internal/fetch"
)

// maxDocument bounds a CPIX response an edge will read.
const maxDocument = 16 << 20

// Poller is an edge fetching release bundles from the origin over mutual
// TLS.
type Poller struct {
	Origin   string // base URL, e.g. https://origin.example:8443
	Streams  []uint32
	Client   *http.Client    // with the edge's client certificate
	Key      *rsa.PrivateKey // the edge certificate's key: CPIX is encrypted to it
	Interval time.Duration   // between polls (default 1 s)
	Logger   *slog.Logger

	documents, refused, added, rejected atomic.Uint64
}

// Stats count what the edge fetched and what it refused.
type Stats struct {
	Documents uint64 // CPIX documents accepted
	Refused   uint64 // fetches that failed or documents refused whole
	Added     uint64 // bundles the edge took
	Rejected  uint64 // bundles the edge refused (duplicates included)
}

// Stats returns a snapshot of the counters.
func (p *Poller) Stats() Stats {
	return Stats{Documents: p.documents.Load(), Refused: p.refused.Load(), Added: p.added.Load(), Rejected: p.rejected.Load()}
}

// ClientTLS is an edge's or packager's TLS configuration toward the origin.
func ClientTLS(cert tls.Certificate, originCA *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: originCA}
}

// Run polls every stream until ctx ends, handing each new bundle to add
// (the edge's Add, which verifies the ANNOUNCE signature). A document that
// fails its checks is refused whole and logged; the next poll tries again.
func (p *Poller) Run(ctx context.Context, add func(*bundle.Bundle) error) error {
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	next := make(map[uint32]uint64, len(p.Streams))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, s := range p.Streams {
			bs, err := p.Fetch(ctx, s, next[s])
			if err != nil {
				if ctx.Err() == nil {
					p.refused.Add(1)
					log.Warn("edge: fetch bundles", "stream", s, "err", err)
				}
				continue
			}
			if bs != nil {
				p.documents.Add(1)
			}
			for _, b := range bs {
				if err := add(b); err != nil {
					p.rejected.Add(1)
					log.Debug("edge: bundle not added", "stream", s, "period", b.Period, "err", err)
				} else {
					p.added.Add(1)
				}
				next[s] = max(next[s], b.Period+1)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Fetch gets the stream's bundles from period from on.
func (p *Poller) Fetch(ctx context.Context, stream uint32, from uint64) ([]*bundle.Bundle, error) {
	url := fmt.Sprintf("%s/v1/streams/%d/bundles?from=%d", p.Origin, stream, from)
	body, err := fetch.Do(ctx, p.Client, http.MethodGet, url, "", maxDocument)
	if err != nil || body == nil {
		return nil, err // nil, nil: nothing new
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
