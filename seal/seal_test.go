package seal

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/embargo-live/embargo/wire"
)

// testRand is a deterministic entropy source for tests.
func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

func testSigner(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func testKeys(n int) []ContentKey {
	keys := make([]ContentKey, n)
	for i := range keys {
		keys[i].KID[0], keys[i].Key[0] = byte(i+1), byte(0xa0+i)
	}
	return keys
}

// announce builds a content-keys ANNOUNCE for stream 7 period 42.
func announce(t *testing.T, signer ed25519.PrivateKey, master []byte) ([]byte, [wire.RKLen]byte) {
	t.Helper()
	payload, err := WrapKeys(master, 7, 42, testKeys(3), testRand(1))
	if err != nil {
		t.Fatal(err)
	}
	a := &Announcement{Stream: 7, Period: 42, ReleaseAt: 1000, PresentAt: 2000, PayloadType: wire.PayloadContentKeys, Payload: payload}
	body, rk, err := BuildAnnounce(signer, a, testRand(2))
	if err != nil {
		t.Fatal(err)
	}
	return body, rk
}

func TestAnnounceRoundTrip(t *testing.T) {
	signer, master := testSigner(1), bytes.Repeat([]byte{9}, MasterKeyLen)
	body, rk := announce(t, signer, master)
	var b wire.Body
	if err := b.Decode(body); err != nil {
		t.Fatal(err)
	}
	ring := NewKeyRing(signer.Public().(ed25519.PublicKey))
	if err := ring.VerifyAnnounce(body, &b); err != nil {
		t.Fatalf("verify: %v", err)
	}
	payload, err := OpenAnnounce(nil, body, &b, &rk)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	keys, err := UnwrapKeys(nil, master, b.Stream, b.Period, payload)
	if err != nil {
		t.Fatalf("unwrap: %v", err)
	}
	if want := testKeys(3); !slices.Equal(keys, want) {
		t.Fatalf("keys %x, want %x", keys, want)
	}
}

func TestWrongRKRefused(t *testing.T) {
	body, rk := announce(t, testSigner(1), bytes.Repeat([]byte{9}, MasterKeyLen))
	var b wire.Body
	if err := b.Decode(body); err != nil {
		t.Fatal(err)
	}
	rk[0] ^= 1
	if _, err := OpenAnnounce(nil, body, &b, &rk); !errors.Is(err, ErrWrongRK) {
		t.Fatalf("wrong RK: got %v", err)
	}
}

// A body whose sealed bytes were changed after signing fails the signature;
// one whose commitment matches but ciphertext does not fails the AEAD.
func TestTamperedBodyRefused(t *testing.T) {
	signer := testSigner(1)
	body, rk := announce(t, signer, bytes.Repeat([]byte{9}, MasterKeyLen))
	ring := NewKeyRing(signer.Public().(ed25519.PublicKey))
	// Offsets in the presentAt, salt and commitment fields, the sealed
	// payload and the signature: each still decodes, so only the checks
	// below can refuse it.
	for _, off := range []int{30, 40, 60, wire.BodyFixedLen + 3, len(body) - 1} {
		bad := bytes.Clone(body)
		bad[off] ^= 0x40
		var b wire.Body
		if err := b.Decode(bad); err != nil {
			t.Fatalf("byte %d flipped: the body no longer decodes (%v), so this case tests nothing", off, err)
		}
		if err := ring.VerifyAnnounce(bad, &b); !errors.Is(err, ErrBadSignature) {
			t.Errorf("byte %d flipped: verify got %v", off, err)
		}
	}
	bad := bytes.Clone(body)
	wire.BodySealed(bad)[0] ^= 1
	var b wire.Body
	if err := b.Decode(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAnnounce(nil, bad, &b, &rk); !errors.Is(err, ErrTampered) {
		t.Fatalf("tampered ciphertext: got %v", err)
	}
}

func TestUnknownSignerRefused(t *testing.T) {
	body, _ := announce(t, testSigner(1), bytes.Repeat([]byte{9}, MasterKeyLen))
	var b wire.Body
	if err := b.Decode(body); err != nil {
		t.Fatal(err)
	}
	if err := NewKeyRing(testSigner(2).Public().(ed25519.PublicKey)).VerifyAnnounce(body, &b); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown signer: got %v", err)
	}
}

// Without the master key, a released period yields no content key.
func TestWrongMasterKeyLearnsNothing(t *testing.T) {
	master := bytes.Repeat([]byte{9}, MasterKeyLen)
	body, rk := announce(t, testSigner(1), master)
	var b wire.Body
	if err := b.Decode(body); err != nil {
		t.Fatal(err)
	}
	payload, err := OpenAnnounce(nil, body, &b, &rk)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{8}, MasterKeyLen)
	keys, err := UnwrapKeys(nil, other, b.Stream, b.Period, payload)
	if !errors.Is(err, ErrMasterKey) || len(keys) != 0 {
		t.Fatalf("wrong master: got %d keys, %v", len(keys), err)
	}
	for _, k := range testKeys(3) {
		if bytes.Contains(payload, k.Key[:]) {
			t.Fatalf("payload contains content key %x in the clear", k.Key)
		}
	}
	// Entries bound to their period: unwrapping under another period fails.
	if _, err := UnwrapKeys(nil, master, b.Stream, b.Period+1, payload); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("entry replayed into another period: got %v", err)
	}
}

func TestShardRootSignature(t *testing.T) {
	signer := testSigner(1)
	s := &wire.Shard{Header: wire.Header{Stream: 7, Period: 42}, K: 2, M: 1, ShardSize: 10, BodyLen: 15}
	s.Root[0] = 1
	if err := SignShardRoot(signer, s); err != nil {
		t.Fatal(err)
	}
	ring := NewKeyRing(signer.Public().(ed25519.PublicKey))
	if err := ring.VerifyShardRoot(s); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, mutate := range map[string]func(*wire.Shard){
		"period": func(s *wire.Shard) { s.Period++ },
		"stream": func(s *wire.Shard) { s.Stream++ },
		"k":      func(s *wire.Shard) { s.K++ },
		"m":      func(s *wire.Shard) { s.M++ },
		"size":   func(s *wire.Shard) { s.ShardSize++ },
		"body":   func(s *wire.Shard) { s.BodyLen++ },
		"root":   func(s *wire.Shard) { s.Root[5] ^= 1 },
	} {
		c := *s
		mutate(&c)
		if err := ring.VerifyShardRoot(&c); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed: got %v", name, err)
		}
	}
}

func TestCommitDependsOnEveryInput(t *testing.T) {
	var salt [wire.SaltLen]byte
	var rk [wire.RKLen]byte
	base := Commit(&salt, 1, 2, &rk)
	salt2, rk2 := salt, rk
	salt2[0], rk2[31] = 1, 1
	for name, c := range map[string][wire.HashLen]byte{
		"salt": Commit(&salt2, 1, 2, &rk), "stream": Commit(&salt, 9, 2, &rk),
		"period": Commit(&salt, 1, 9, &rk), "rk": Commit(&salt, 1, 2, &rk2),
	} {
		if c == base {
			t.Errorf("commitment ignores %s", name)
		}
	}
}

func TestKeySizes(t *testing.T) {
	if _, err := WrapKeys(make([]byte, 16), 1, 1, testKeys(1), testRand(1)); !errors.Is(err, ErrKeySize) {
		t.Errorf("short master key: %v", err)
	}
	if _, _, err := BuildAnnounce(make([]byte, 10), &Announcement{}, testRand(1)); !errors.Is(err, ErrKeySize) {
		t.Errorf("short signer: %v", err)
	}
}
