// Command embargo-wasm is the device receiver (engine/receiver) compiled to
// WebAssembly for web pages: build it with
//
//	GOOS=js GOARCH=wasm go build -o embargo.wasm ./cmd/embargo-wasm
//
// and load it with Go's wasm_exec.js and web/dist/embargo.js. It defines
// one JavaScript function, embargoReceiver(options, onPeriod), returning
// {feed(Uint8Array), stats(), timeRequest(), clock()}: the page feeds it
// every message an edge (engine/webedge) delivers — time echoes measure
// the page's clock against the edge's (clock) — and onPeriod receives each released
// period once, as JSON (Period), with its content keys. The verification
// (Ed25519 signatures, SHA-256 commitments, the release key, the key
// unwrap) is the Go receiver's own code, not a second implementation: the
// keys do not exist in the page before a RELEASE opens them.
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// Options is what a page passes to embargoReceiver, as JSON.
type Options struct {
	// OriginPub is the origin's public key: origin.pub's PEM.
	OriginPub string `json:"originPub"`
	// Master is the event's master key in hex (master.key's content).
	Master string `json:"master"`
	// Streams are the streams to receive.
	Streams []uint32 `json:"streams"`
}

// Period is one released period as the page receives it. Instants are
// milliseconds: the *UTC fields on the page's clock (Date.now()), the *TAI
// fields as signed, UTC = TAI − 37 s (ptp.DefaultTAIOffset, right since
// 2017). A page whose clock is off by d presents d off: the page's clock
// is assumed synchronized (NTP, as the operating system keeps it).
type Period struct {
	Stream       uint32  `json:"stream"`
	Period       uint64  `json:"period"`
	ReleaseAtUTC float64 `json:"releaseAtUTC"`
	PresentAtUTC float64 `json:"presentAtUTC"`
	// ReleaseAtTAI and PresentAtTAI are the signed instants in TAI ns,
	// as decimal strings: they exceed a JavaScript number's exact range.
	ReleaseAtTAI string `json:"releaseAtTAI"`
	PresentAtTAI string `json:"presentAtTAI"`
	// OpenedUTC is when the keys were ready in the page.
	OpenedUTC float64 `json:"openedUTC"`
	// Keys are the content keys, KID and key in hex; Resource is an
	// opaque payload in hex. Exactly one is set.
	Keys     []Key  `json:"keys,omitempty"`
	Resource string `json:"resource,omitempty"`
	CatchUp  bool   `json:"catchUp"`
	EdgeID   uint32 `json:"edgeID"`
}

// Key is one content key in hex.
type Key struct {
	KID string `json:"kid"`
	Key string `json:"key"`
}

// errOptions is wrapped by the reasons parseOptions refuses options.
var errOptions = errors.New("embargo: invalid options")

// parseOptions decodes a page's options into a receiver configuration
// that calls emit with each released period.
func parseOptions(js string, emit func(Period)) (receiver.Config, error) {
	var o Options
	if err := json.Unmarshal([]byte(js), &o); err != nil {
		return receiver.Config{}, fmt.Errorf("%w: %v", errOptions, err)
	}
	pub, err := seal.ParsePublicKey([]byte(o.OriginPub))
	if err != nil {
		return receiver.Config{}, fmt.Errorf("%w: originPub: %v: give origin.pub's PEM", errOptions, err)
	}
	master, err := hex.DecodeString(o.Master)
	if err != nil || len(master) != seal.MasterKeyLen {
		return receiver.Config{}, fmt.Errorf("%w: master: want %d bytes of hex (master.key)", errOptions, seal.MasterKeyLen)
	}
	if len(o.Streams) == 0 {
		return receiver.Config{}, fmt.Errorf("%w: no streams", errOptions)
	}
	return receiver.Config{
		Trusted: seal.NewKeyRing(pub), Master: master, Streams: o.Streams,
		OnEvent: func(ev receiver.Event) { emit(period(ev)) },
	}, nil
}

// period is ev as the page sees it.
func period(ev receiver.Event) Period {
	p := Period{
		Stream: ev.Stream, Period: ev.Period,
		ReleaseAtUTC: utcMillis(ev.ReleaseAt), PresentAtUTC: utcMillis(ev.PresentAt),
		ReleaseAtTAI: fmt.Sprint(ev.ReleaseAt), PresentAtTAI: fmt.Sprint(ev.PresentAt),
		OpenedUTC: utcMillis(ev.Opened), CatchUp: ev.CatchUp, EdgeID: ev.EdgeID,
	}
	for _, k := range ev.Keys {
		p.Keys = append(p.Keys, Key{KID: hex.EncodeToString(k.KID[:]), Key: hex.EncodeToString(k.Key[:])})
	}
	if ev.Resource != nil {
		p.Resource = hex.EncodeToString(ev.Resource)
	}
	return p
}

// utcMillis is a TAI instant as milliseconds since the Unix epoch, UTC.
func utcMillis(tai int64) float64 {
	return float64(tai-int64(ptp.DefaultTAIOffset)) / float64(time.Millisecond)
}

// noAddr is the From of every datagram: a page knows its edges by URL.
var noAddr netip.AddrPort
