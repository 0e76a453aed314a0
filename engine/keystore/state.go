package keystore

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/seal"
)

// State is where an origin keeps what it issues: its signing key, each
// event, every period. Store (one process's directory) implements it, and
// so does package etcdstore (replicas sharing an etcd cluster).
//
// Every write creates or refuses: a value once stored is never replaced,
// and a second writer — another request, or another replica — gets
// ErrExists and reads back the one that stands. That is how replicas agree
// on one key per period without talking to each other. Reads return
// ErrNotFound for what was never stored and ErrCorrupt for what fails its
// checks. Implementations are safe for concurrent use.
type State interface {
	// SigningKey returns the origin's Ed25519 key, creating it on first
	// use; every caller gets the one that was stored first.
	SigningKey() (ed25519.PrivateKey, error)
	// CreateEvent stores a new event, or returns ErrExists.
	CreateEvent(ev *Event) error
	Event(stream uint32) (*Event, error)
	// Events lists the stored events' streams in ascending order.
	Events() ([]uint32, error)
	// PutPeriod stores an issued period, or returns ErrExists.
	PutPeriod(p *Period) error
	Period(stream uint32, period uint64) (*Period, error)
	// Periods lists the stream's stored periods from `from` on, in
	// ascending order.
	Periods(stream uint32, from uint64) ([]uint64, error)
}

var _ State = (*Store)(nil)

// NewSigningKey makes an origin signing key and its stored form.
func NewSigningKey() (ed25519.PrivateKey, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	data, err := pki.EncodeEd25519(priv)
	if err != nil {
		return nil, nil, err
	}
	return priv, data, nil
}

// ParseSigningKey parses a stored signing key; name says where it was
// stored, for the error.
func ParseSigningKey(data []byte, name string) (ed25519.PrivateKey, error) {
	priv, err := pki.ParseEd25519(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	return priv, nil
}

// MarshalEvent checks ev and encodes it for storage.
func MarshalEvent(ev *Event) ([]byte, error) {
	if len(ev.Master) != seal.MasterKeyLen {
		return nil, fmt.Errorf("keystore: master key of %d bytes", len(ev.Master))
	}
	if err := ev.Schedule.Check(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(ev, "", "  ")
}

// ParseEvent decodes stream's stored event and checks it; name says where
// it was stored.
func ParseEvent(stream uint32, data []byte, name string) (*Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	if ev.Stream != stream || len(ev.Master) != seal.MasterKeyLen || ev.Schedule.Check() != nil {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, name)
	}
	return &ev, nil
}

// MarshalPeriod encodes p for storage.
func MarshalPeriod(p *Period) ([]byte, error) { return json.Marshal(p) }

// ParsePeriod decodes a stored period and checks that it is stream's
// period; name says where it was stored.
func ParsePeriod(stream uint32, period uint64, data []byte, name string) (*Period, error) {
	var p Period
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	if p.Bundle == nil || p.Bundle.Stream != stream || p.Bundle.Period != period {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, name)
	}
	return &p, nil
}
