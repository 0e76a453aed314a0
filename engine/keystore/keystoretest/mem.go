// Package keystoretest holds what tests of the origin's state need beside
// the seam keystore.State: Mem, an in-memory State that several issuers
// can share as replicas share an etcd cluster, and Conformance, the
// contract every State implementation is checked against.
package keystoretest

import (
	"crypto/ed25519"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/embargo-live/embargo/engine/keystore"
)

// Mem is a keystore.State in memory. It stores encoded values, as a real
// store does, so that each reader gets its own copy. Its zero value is
// empty and ready; it is safe for concurrent use.
type Mem struct {
	mu      sync.Mutex
	signing []byte
	events  map[uint32][]byte
	periods map[uint32]map[uint64][]byte
	// Puts counts PutPeriod calls that stored a period.
	Puts int
}

var _ keystore.State = (*Mem)(nil)

func (m *Mem) SigningKey() (ed25519.PrivateKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signing == nil {
		_, data, err := keystore.NewSigningKey()
		if err != nil {
			return nil, err
		}
		m.signing = data
	}
	return keystore.ParseSigningKey(m.signing, "mem:signing-key")
}

func (m *Mem) CreateEvent(ev *keystore.Event) error {
	data, err := keystore.MarshalEvent(ev)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.events == nil {
		m.events = make(map[uint32][]byte)
	}
	if m.events[ev.Stream] != nil {
		return fmt.Errorf("%w: mem:event %d", keystore.ErrExists, ev.Stream)
	}
	m.events[ev.Stream] = data
	return nil
}

func (m *Mem) Event(stream uint32) (*keystore.Event, error) {
	m.mu.Lock()
	data := m.events[stream]
	m.mu.Unlock()
	name := fmt.Sprintf("mem:event %d", stream)
	if data == nil {
		return nil, fmt.Errorf("%w: %s", keystore.ErrNotFound, name)
	}
	return keystore.ParseEvent(stream, data, name)
}

func (m *Mem) Events() ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.events)), nil
}

func (m *Mem) PutPeriod(p *keystore.Period) error {
	data, err := keystore.MarshalPeriod(p)
	if err != nil {
		return err
	}
	s, n := p.Bundle.Stream, p.Bundle.Period
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.periods == nil {
		m.periods = make(map[uint32]map[uint64][]byte)
	}
	if m.periods[s] == nil {
		m.periods[s] = make(map[uint64][]byte)
	}
	if m.periods[s][n] != nil {
		return fmt.Errorf("%w: mem:period %d/%d", keystore.ErrExists, s, n)
	}
	m.periods[s][n] = data
	m.Puts++
	return nil
}

func (m *Mem) Period(stream uint32, period uint64) (*keystore.Period, error) {
	m.mu.Lock()
	data := m.periods[stream][period]
	m.mu.Unlock()
	name := fmt.Sprintf("mem:period %d/%d", stream, period)
	if data == nil {
		return nil, fmt.Errorf("%w: %s", keystore.ErrNotFound, name)
	}
	return keystore.ParsePeriod(stream, period, data, name)
}

func (m *Mem) Periods(stream uint32, from uint64) ([]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint64
	for n := range m.periods[stream] {
		if n >= from {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
