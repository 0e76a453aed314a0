package fec

import (
	"fmt"

	"github.com/embargo-live/embargo/wire"
)

// Deferred checks. With WithAsyncChecks the assembler never checks a
// signature inside Add: when its budget picks a root to check, Add returns
// ErrCheckPending and the caller runs the check (NextCheck, Check.Verify)
// where it likes — on another goroutine, without the assembler's lock —
// and hands the result back (Checked). So a reader that feeds Add never
// waits for a signature, and a RELEASE read behind a forged shard is not
// delayed by it. Shards of a root under check are held with the check
// (bounded) and stored if it passes.

const (
	// maxPendingChecks bounds the checks waiting for the caller; past it a
	// root that would be checked waits (ErrDeferred).
	maxPendingChecks = 64
	// maxPendingBytes bounds the shards held with pending checks.
	maxPendingBytes = 1 << 20
)

// WithAsyncChecks makes Add defer root signature checks to its caller
// (ErrCheckPending, NextCheck, Checked).
func WithAsyncChecks() Option { return func(a *Assembler) { a.async = true } }

// deferredCheck is a root picked for a check, with the shards of it that
// arrived meanwhile (each proven against the root).
type deferredCheck struct {
	key     periodKey
	id      rootID
	shards  map[uint8][]byte
	waiting int // datagrams Add answered ErrCheckPending for
}

// deferCheck queues a check of id; s waits on it if it is of that root
// (ErrCheckPending), else it is not checked this time (ErrDeferred).
func (a *Assembler) deferCheck(key periodKey, id *rootID, s *wire.Shard, mine bool) error {
	c := &deferredCheck{key: key, id: *id, shards: make(map[uint8][]byte)}
	a.checking[c.id] = c
	a.checkQ = append(a.checkQ, c)
	if !mine {
		return ErrDeferred
	}
	c.hold(a, s)
	return ErrCheckPending
}

// hold makes s (proven, of c's root) wait on the check, keeping a copy
// within the pending bytes bound and k shards.
func (c *deferredCheck) hold(a *Assembler, s *wire.Shard) {
	c.waiting++
	if _, ok := c.shards[s.Index]; ok || len(c.shards) >= int(c.id.k) || a.pendingBytes+len(s.Data) > maxPendingBytes {
		return
	}
	c.shards[s.Index] = append([]byte(nil), s.Data...)
	a.pendingBytes += len(s.Data)
}

// Check is a root signature check deferred to the assembler's caller.
type Check struct{ c *deferredCheck }

// Verify runs the check. It reads nothing of the assembler's, so it may
// run without the caller's lock, concurrently with Add.
func (c Check) Verify(v RootVerifier) error { return v.VerifyShardRoot(c.c.id.shard()) }

// Held is how many shards wait on the check.
func (c Check) Held() int { return len(c.c.shards) }

// NextCheck returns the oldest deferred check, if any.
func (a *Assembler) NextCheck() (Check, bool) {
	if len(a.checkQ) == 0 {
		return Check{}, false
	}
	c := a.checkQ[0]
	a.checkQ[0] = nil
	a.checkQ = a.checkQ[1:]
	return Check{c}, true
}

// Checked takes the result of c.Verify. If the root verified, its period
// starts with it and the shards held with the check are stored; the body
// is returned if they complete it. If not, the root is remembered as
// forged and the error wraps ErrForged. unstored is how many of the
// datagrams that waited on the check (ErrCheckPending) were not stored:
// all of them when err is set, else those past the hold bound.
func (a *Assembler) Checked(c Check, verr error) (body []byte, unstored int, err error) {
	d := c.c
	delete(a.checking, d.id)
	for _, s := range d.shards {
		a.pendingBytes -= len(s)
	}
	a.stats.Verified++
	if verr != nil {
		a.stats.Failed++
		a.gate.remember(&d.id)
		return nil, d.waiting, fmt.Errorf("%w: %w", ErrForged, verr)
	}
	var p *pending
	if _, ok := a.done[d.key]; ok {
		return nil, d.waiting, ErrComplete
	}
	if n, ok := a.newest[d.key.stream]; ok && d.key.period+a.window < n {
		return nil, d.waiting, ErrStale
	}
	if a.periods[d.key] != nil {
		return nil, d.waiting, ErrOtherRoot // another root of the period verified first
	}
	if p, err = a.begin(d.key, &d.id); err != nil {
		return nil, d.waiting, err
	}
	unstored = d.waiting - len(d.shards)
	for i, data := range d.shards {
		if body, err = a.store(d.key, p, int(i), data); body != nil || err != nil {
			return body, unstored, err
		}
	}
	return nil, unstored, nil
}

// Stream and Period name the period c checks a root of.
func (c Check) Stream() uint32 { return c.c.key.stream }

// Period is the period c checks a root of.
func (c Check) Period() uint64 { return c.c.key.period }
