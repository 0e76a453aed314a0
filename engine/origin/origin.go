package origin

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// ErrConfig is wrapped by the reasons New and Schedule.Check refuse.
var ErrConfig = errors.New("origin: invalid config")

// Origin holds an event's signing key and master key.
type Origin struct {
	signer      ed25519.PrivateKey
	master      []byte
	rand        io.Reader
	maxDatagram int
}

// Option configures New.
type Option func(*Origin)

// WithRand draws keys, secrets, salts and nonces from r instead of
// crypto/rand; for reproducible tests only.
func WithRand(r io.Reader) Option { return func(o *Origin) { o.rand = r } }

// WithMaxDatagram sets the largest ANNOUNCE datagram (default
// wire.DefaultMaxDatagram), which fixes the shard geometry.
func WithMaxDatagram(n int) Option { return func(o *Origin) { o.maxDatagram = n } }

// New returns an origin that signs with signer and wraps content keys
// under master (seal.MasterKeyLen bytes).
func New(signer ed25519.PrivateKey, master []byte, opts ...Option) (*Origin, error) {
	o := &Origin{signer: signer, master: master, rand: rand.Reader, maxDatagram: wire.DefaultMaxDatagram}
	for _, opt := range opts {
		opt(o)
	}
	switch {
	case len(signer) != ed25519.PrivateKeySize:
		return nil, fmt.Errorf("%w: signing key of %d bytes", ErrConfig, len(signer))
	case len(master) != seal.MasterKeyLen:
		return nil, fmt.Errorf("%w: master key of %d bytes, want %d", ErrConfig, len(master), seal.MasterKeyLen)
	case o.maxDatagram < wire.HeaderLen || o.maxDatagram > wire.MaxDatagram:
		return nil, fmt.Errorf("%w: max datagram %d", ErrConfig, o.maxDatagram)
	}
	return o, nil
}

// Generate returns an origin with a fresh signing key and master key, and
// the master key: for labs, demos and tests, where nothing outlives the run.
func Generate(opts ...Option) (*Origin, []byte, error) {
	_, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	master := make([]byte, seal.MasterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return nil, nil, err
	}
	o, err := New(signer, master, opts...)
	return o, master, err
}

// Derive returns this origin drawing, for one (stream, period), its keys,
// secrets, salts and nonces from a stream derived from its signing key
// (HMAC-SHA256 of the key's seed, keying ChaCha8) instead of crypto/rand.
// The same (stream, period) always gives the same bundle, RK included: an
// origin with no store of what it issued (the one embedded in an edge)
// reissues after a restart exactly what it issued before, where fresh
// randomness would give receivers that hold the first ANNOUNCE a RELEASE
// that opens nothing. Only the holder of the signing key can derive it;
// the master key, which every viewer holds, plays no part.
func (o *Origin) Derive(stream uint32, period uint64) *Origin {
	mac := hmac.New(sha256.New, o.signer.Seed())
	mac.Write([]byte("embargo origin: derived period secrets v1"))
	mac.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, stream), period))
	d := *o
	d.rand = mrand.NewChaCha8([32]byte(mac.Sum(nil)))
	return &d
}

// PublicKey is the key receivers and edges must trust.
func (o *Origin) PublicKey() ed25519.PublicKey { return o.signer.Public().(ed25519.PublicKey) }

// NewContentKeys draws n content keys with random KIDs.
func (o *Origin) NewContentKeys(n int) ([]seal.ContentKey, error) {
	if n < 1 || n > wire.MaxContentKeys {
		return nil, fmt.Errorf("origin: %d content keys, want 1…%d", n, wire.MaxContentKeys)
	}
	keys := make([]seal.ContentKey, n)
	for i := range keys {
		if _, err := io.ReadFull(o.rand, keys[i].KID[:]); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(o.rand, keys[i].Key[:]); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// Keys makes the bundle that releases content keys for (stream, period)
// at the given instants.
func (o *Origin) Keys(stream uint32, period uint64, at Instants, keys []seal.ContentKey) (*bundle.Bundle, error) {
	payload, err := seal.WrapKeys(o.master, stream, period, keys, o.rand)
	if err != nil {
		return nil, fmt.Errorf("origin: wrap keys: %w", err)
	}
	return o.bundle(stream, period, at, wire.PayloadContentKeys, payload)
}

// Resource makes the bundle that releases an opaque resource (an odds
// snapshot, a manifest unlock) for (stream, period). Receivers need no
// master key for it: it is confidential until release, not after.
func (o *Origin) Resource(stream uint32, period uint64, at Instants, payload []byte) (*bundle.Bundle, error) {
	return o.bundle(stream, period, at, wire.PayloadOpaque, payload)
}

func (o *Origin) bundle(stream uint32, period uint64, at Instants, typ wire.PayloadType, payload []byte) (*bundle.Bundle, error) {
	body, rk, err := seal.BuildAnnounce(o.signer, &seal.Announcement{
		Stream: stream, Period: period, ReleaseAt: at.ReleaseAt, PresentAt: at.PresentAt,
		PayloadType: typ, Payload: payload,
	}, o.rand)
	if err != nil {
		return nil, fmt.Errorf("origin: stream %d period %d: %w", stream, period, err)
	}
	shards, err := bundle.Shard(o.signer, body, o.maxDatagram)
	if err != nil {
		return nil, fmt.Errorf("origin: stream %d period %d: %w", stream, period, err)
	}
	return &bundle.Bundle{
		Stream: stream, Period: period, ReleaseAt: at.ReleaseAt, PresentAt: at.PresentAt,
		RK: rk, Shards: shards,
	}, nil
}
