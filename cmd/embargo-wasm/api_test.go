package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/internal/depcheck"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// TestDependencies: the page's binary is the device receiver and nothing
// of the edge or the origin.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "cmd/embargo-wasm", "github.com/facebook/time", "github.com/cilium/ebpf", "golang.org/x/net", "./engine/udp", "./bpf", "./engine/edge", "./engine/keystore", "./engine/origin", "./engine/webedge")
}

// event makes an origin and options for it.
func event(t testing.TB) (*origin.Origin, string) {
	t.Helper()
	_, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	master := make([]byte, seal.MasterKeyLen)
	rand.Read(master)
	org, err := origin.New(signer, master)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := seal.EncodePublicKey(org.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(Options{OriginPub: string(pub), Master: hex.EncodeToString(master), Streams: []uint32{7}})
	return org, string(opts)
}

// TestPeriod feeds a period's datagrams through the options' receiver:
// the page gets the origin's keys, its instants in UTC milliseconds, and
// nothing before the RELEASE.
func TestPeriod(t *testing.T) {
	org, opts := event(t)
	var got []Period
	cfg, err := parseOptions(opts, func(p Period) { got = append(got, p) })
	if err != nil {
		t.Fatal(err)
	}
	r, err := receiver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := org.NewContentKeys(2)
	if err != nil {
		t.Fatal(err)
	}
	at := origin.Instants{ReleaseAt: ptp.DefaultTAIOffset.FromTime(time.Now()), PresentAt: ptp.DefaultTAIOffset.FromTime(time.Now().Add(2 * time.Second))}
	b, err := org.Keys(7, 3, at, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Shards {
		r.Handle(s, time.Time{}, noAddr)
	}
	if len(got) != 0 {
		t.Fatalf("a period before its RELEASE: %+v", got)
	}
	rel := wire.Release{Header: wire.Header{Stream: 7, Period: 3}, RK: b.RK, ReleaseAt: b.ReleaseAt, SentAt: b.ReleaseAt, EdgeID: 4}
	dg := make([]byte, wire.ReleaseLen)
	if _, err := rel.Encode(dg); err != nil {
		t.Fatal(err)
	}
	r.Handle(dg, time.Time{}, noAddr)
	r.Handle(dg, time.Time{}, noAddr) // a copy: delivered once
	if len(got) != 1 {
		t.Fatalf("%d periods, want 1", len(got))
	}
	p := got[0]
	var want []Key
	for _, k := range keys {
		want = append(want, Key{KID: hex.EncodeToString(k.KID[:]), Key: hex.EncodeToString(k.Key[:])})
	}
	if p.Stream != 7 || p.Period != 3 || p.EdgeID != 4 || !slices.Equal(p.Keys, want) {
		t.Errorf("period %+v, want stream 7, period 3, edge 4, keys %v", p, want)
	}
	if utc := float64(time.Unix(0, at.PresentAt-int64(37*time.Second)).UnixNano()) / 1e6; p.PresentAtUTC != utc {
		t.Errorf("PresentAtUTC = %f, want %f (TAI − 37 s)", p.PresentAtUTC, utc)
	}
	if p.ReleaseAtTAI != jsonInt(at.ReleaseAt) || p.PresentAtTAI != jsonInt(at.PresentAt) {
		t.Errorf("TAI instants %s, %s, want %d, %d", p.ReleaseAtTAI, p.PresentAtTAI, at.ReleaseAt, at.PresentAt)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestOptionsRefused(t *testing.T) {
	_, good := event(t)
	var o Options
	json.Unmarshal([]byte(good), &o)
	for name, edit := range map[string]func(*Options){
		"no key":     func(o *Options) { o.OriginPub = "" },
		"bad master": func(o *Options) { o.Master = "abcd" },
		"no streams": func(o *Options) { o.Streams = nil },
	} {
		bad := o
		edit(&bad)
		js, _ := json.Marshal(bad)
		if _, err := parseOptions(string(js), func(Period) {}); !errors.Is(err, errOptions) {
			t.Errorf("%s: %v, want errOptions", name, err)
		}
	}
	if _, err := parseOptions("{", func(Period) {}); !errors.Is(err, errOptions) {
		t.Errorf("bad JSON: %v, want errOptions", err)
	}
}

// FuzzOptions: whatever a page passes, options are refused with
// errOptions or make a receiver.
func FuzzOptions(f *testing.F) {
	_, good := event(f)
	f.Add(good)
	f.Add(`{"streams":[1]}`)
	f.Add(`{"originPub":"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n","master":"00","streams":[]}`)
	f.Fuzz(func(t *testing.T, js string) {
		cfg, err := parseOptions(js, func(Period) {})
		if err != nil {
			if !errors.Is(err, errOptions) {
				t.Fatalf("error %v does not wrap errOptions", err)
			}
			return
		}
		if _, err := receiver.New(cfg); err != nil {
			t.Fatalf("accepted options make no receiver: %v", err)
		}
	})
}
