package edgetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// ErrMismatch is returned by Send for a datagram that does not parse, or
// whose own type is not the batch's: the caller mislabelled the batch.
var ErrMismatch = errors.New("edgetest: datagram does not match the batch type")

// Sent is one datagram as a Sender saw it.
type Sent struct {
	At       int64     // true time of the send (TAI ns), from Sender.True
	Type     wire.Type // the batch's type, as passed to Send
	Stream   uint32
	Period   uint64
	Datagram []byte // a copy
}

// Sender is an in-memory edge.Sender and edge.CatchUpSender. Set the
// exported fields before the edge runs; the methods are safe for
// concurrent use. The zero value records at ptp.SystemTAI, takes no time
// and never fails.
type Sender struct {
	// True is the true time stamped on each send (a ptp.Sim's True, so a
	// test compares sends with what really happened); nil: ptp.SystemTAI,
	// which is virtual inside a synctest bubble.
	True func() int64
	// AnnounceDelay and ReleaseDelay are how long each Send of that type
	// takes after recording its datagrams, as a fan-out to many
	// subscribers does: a time.Sleep, so virtual inside a bubble.
	AnnounceDelay, ReleaseDelay time.Duration

	mu      sync.Mutex
	err     error
	sent    []Sent
	batches map[wire.Type]int
	history edge.History
}

// Send records dgs at the true time and returns len(dgs), nil; or, once
// Fail set an error, records nothing and returns 0 and that error. Every
// datagram must be of type typ (else ErrMismatch, nothing recorded). It
// then sleeps AnnounceDelay or ReleaseDelay, even when failing.
func (s *Sender) Send(typ wire.Type, dgs [][]byte) (int, error) {
	n, err := s.record(typ, dgs)
	switch typ {
	case wire.TypeAnnounce:
		time.Sleep(s.AnnounceDelay)
	case wire.TypeRelease:
		time.Sleep(s.ReleaseDelay)
	}
	return n, err
}

func (s *Sender) record(typ wire.Type, dgs [][]byte) (int, error) {
	now := ptp.SystemTAI
	if s.True != nil {
		now = s.True
	}
	at := now()
	batch := make([]Sent, 0, len(dgs))
	for i, d := range dgs {
		h, err := wire.Peek(d)
		if err != nil || h.Type != typ {
			return 0, fmt.Errorf("%w: datagram %d of a %v batch: %v %v", ErrMismatch, i, typ, h.Type, err)
		}
		batch = append(batch, Sent{At: at, Type: typ, Stream: h.Stream, Period: h.Period, Datagram: slices.Clone(d)})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.sent = append(s.sent, batch...)
	if s.batches == nil {
		s.batches = make(map[wire.Type]int)
	}
	s.batches[typ]++
	return len(dgs), nil
}

// Fail makes every later Send fail with err; nil makes them succeed again.
func (s *Sender) Fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// Sent returns the datagrams sent so far, in order.
func (s *Sender) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// Of returns the datagrams sent so far of type typ, in order.
func (s *Sender) Of(typ wire.Type) []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Sent
	for _, d := range s.sent {
		if d.Type == typ {
			out = append(out, d)
		}
	}
	return out
}

// Batches returns how many Sends of type typ succeeded.
func (s *Sender) Batches(typ wire.Type) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches[typ]
}

// SetHistory records h: edge.New hands its edge to every CatchUpSender.
func (s *Sender) SetHistory(h edge.History) {
	s.mu.Lock()
	s.history = h
	s.mu.Unlock()
}

// History returns what SetHistory was given, or nil.
func (s *Sender) History() edge.History {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history
}

// Runner is a Sender with work of its own (an edge.RunSender): Run blocks
// until its context ends, then returns nil, or until End, then returns
// End's error. Make one with NewRunner.
type Runner struct {
	*Sender
	end     chan error
	once    sync.Once
	started chan struct{}
}

// NewRunner returns a Runner sending through s.
func NewRunner(s *Sender) *Runner {
	return &Runner{Sender: s, end: make(chan error, 1), started: make(chan struct{})}
}

// Run implements edge.RunSender. It may be called once.
func (r *Runner) Run(ctx context.Context) error {
	close(r.started)
	select {
	case <-ctx.Done():
		return nil
	case err := <-r.end:
		return err
	}
}

// Started is closed once Run has been called.
func (r *Runner) Started() <-chan struct{} { return r.started }

// End makes Run return err (nil: return nil, as if it stopped without
// cause). Only the first call counts.
func (r *Runner) End(err error) {
	r.once.Do(func() { r.end <- err })
}
