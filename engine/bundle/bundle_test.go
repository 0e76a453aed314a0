package bundle_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/seal"
)

func newOrigin(t testing.TB) *origin.Origin {
	o, _, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestBundleTampering: every way a bundle can be wrong is refused by Open.
func TestBundleTampering(t *testing.T) {
	o := newOrigin(t)
	ring := seal.NewKeyRing(o.PublicKey())
	at := origin.Instants{ReleaseAt: 1_800_000_000_000_000_000, PresentAt: 1_800_000_001_000_000_000}
	payload := bytes.Repeat([]byte("odds "), 600) // k > 1
	good, err := o.Resource(2, 5, at, payload)
	if err != nil {
		t.Fatal(err)
	}
	other, err := o.Resource(2, 6, at, payload)
	if err != nil {
		t.Fatal(err)
	}
	stranger := newOrigin(t)
	clone := func(f func(b *bundle.Bundle)) *bundle.Bundle {
		c := *good
		c.Shards = make([][]byte, len(good.Shards))
		for i := range c.Shards {
			c.Shards[i] = bytes.Clone(good.Shards[i])
		}
		f(&c)
		return &c
	}
	for name, b := range map[string]*bundle.Bundle{
		"wrong RK":         clone(func(b *bundle.Bundle) { b.RK[0] ^= 1 }),
		"releaseAt moved":  clone(func(b *bundle.Bundle) { b.ReleaseAt -= int64(time.Second) }),
		"presentAt before": clone(func(b *bundle.Bundle) { b.PresentAt = b.ReleaseAt - 1 }),
		"other period":     clone(func(b *bundle.Bundle) { b.Period = 6 }),
		"no shards":        clone(func(b *bundle.Bundle) { b.Shards = nil }),
		"shard missing":    clone(func(b *bundle.Bundle) { b.Shards = b.Shards[:len(b.Shards)-1] }),
		"parity corrupted": clone(func(b *bundle.Bundle) { last := b.Shards[len(b.Shards)-1]; last[len(last)-1] ^= 1 }),
		"shard swapped":    clone(func(b *bundle.Bundle) { b.Shards[0] = other.Shards[0] }),
		"garbage shard":    clone(func(b *bundle.Bundle) { b.Shards[1] = []byte("nope") }),
		"nil":              nil,
	} {
		if _, err := bundle.Open(b, ring); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := bundle.Open(good, seal.NewKeyRing(stranger.PublicKey())); !errors.Is(err, bundle.ErrInvalid) {
		t.Errorf("untrusted origin: %v", err)
	}
	if _, err := bundle.Open(good, ring); err != nil {
		t.Errorf("the untouched bundle: %v", err)
	}
}
