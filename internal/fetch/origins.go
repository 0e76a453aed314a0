package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Origins are the base URLs of an origin's replicas (https://host:port),
// which serve the same state: a client sends each request to the one in
// use and, when that one fails — no connection, a timeout, a 5xx — tries
// the next in turn, and keeps using the first that answers. An answer
// that is not a failure of the replica (a 4xx: the request itself is
// refused, and every replica would refuse it) is returned as is. Waiting
// between rounds of failures is the caller's (its backoff). Safe for
// concurrent use.
type Origins struct {
	bases     []string
	timeout   atomic.Int64 // ns one replica may take; 0: the client's Timeout alone
	cur       atomic.Int64
	failovers atomic.Uint64
	failing   atomic.Bool // the last request failed on every replica

	mu   sync.Mutex
	last string // why the last failover happened
}

// NewOrigins returns the replicas at bases, using the first.
func NewOrigins(bases ...string) *Origins {
	return &Origins{bases: bases}
}

// SetTimeout bounds how long one replica may take to answer a request
// before the next is tried (a hung replica, not only a refusing one); 0
// leaves it to the client's Timeout. Safe to call while requests run: the
// next attempt takes the new bound.
func (o *Origins) SetTimeout(d time.Duration) { o.timeout.Store(int64(max(d, 0))) }

// Timeout is the bound SetTimeout set.
func (o *Origins) Timeout() time.Duration { return time.Duration(o.timeout.Load()) }

// Current is the base URL in use.
func (o *Origins) Current() string { return o.bases[o.cur.Load()] }

// Failovers counts moves from a failing replica to the next.
func (o *Origins) Failovers() uint64 { return o.failovers.Load() }

// Status says which replica is in use and why the last failover happened,
// and is false while the last request failed on every replica.
func (o *Origins) Status() (ok bool, reason string) {
	o.mu.Lock()
	last := o.last
	o.mu.Unlock()
	reason = "using " + o.Current()
	if len(o.bases) > 1 {
		reason += fmt.Sprintf(" of %d replicas", len(o.bases))
	}
	if n := o.failovers.Load(); n > 0 {
		reason += fmt.Sprintf("; failovers: %d, the last after %s", n, last)
	}
	if o.failing.Load() {
		return false, fmt.Sprintf("every replica failed the last request; %s", reason)
	}
	return true, reason
}

// Failed reports whether err is a failure of the replica, after which
// another may answer: no answer at all (connection refused or reset, TLS,
// a timeout), or a 5xx.
func Failed(err error) bool {
	if err == nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	return true
}

// Do is the package's DoHeader on path (which starts with '/') at each
// replica in turn, as Origins says.
func (o *Origins) Do(ctx context.Context, c *http.Client, method, path, token string, limit int) ([]byte, http.Header, error) {
	return o.try(ctx, func(ctx context.Context, base string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err == nil && token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req, err
	}, c, limit)
}

// Post is the package's Post on path at each replica in turn.
func (o *Origins) Post(ctx context.Context, c *http.Client, path, contentType string, body []byte, limit int) ([]byte, error) {
	out, _, err := o.try(ctx, func(ctx context.Context, base string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", contentType)
		}
		return req, err
	}, c, limit)
	return out, err
}

func (o *Origins) try(ctx context.Context, build func(ctx context.Context, base string) (*http.Request, error), c *http.Client, limit int) ([]byte, http.Header, error) {
	start := o.cur.Load()
	var errs []error
	for k := range int64(len(o.bases)) {
		i := (start + k) % int64(len(o.bases))
		actx, cancel := o.attempt(ctx)
		req, err := build(actx, o.bases[i])
		if err != nil {
			cancel()
			return nil, nil, err
		}
		out, h, err := send(c, req, limit) // the whole answer is read before cancel
		cancel()
		if ctx.Err() != nil {
			return nil, nil, err
		}
		if !Failed(err) {
			o.failing.Store(false)
			return out, h, err
		}
		errs = append(errs, err)
		if next := (i + 1) % int64(len(o.bases)); next != i && o.cur.CompareAndSwap(i, next) {
			o.failovers.Add(1)
			o.mu.Lock()
			o.last = fmt.Sprintf("%s failed: %v", o.bases[i], err)
			o.mu.Unlock()
		}
	}
	o.failing.Store(true)
	return nil, nil, errors.Join(errs...)
}

// attempt is the context of one request to a replica: ctx within the
// timeout, if one is set.
func (o *Origins) attempt(ctx context.Context) (context.Context, context.CancelFunc) {
	if d := o.Timeout(); d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return ctx, func() {}
}
