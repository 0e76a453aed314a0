// Command libembargo is embargo's receiver as a C library, for device
// teams who cannot link a Go package: iOS and macOS (Swift), Android
// (Kotlin over the NDK), smart TVs and set-top boxes (C/C++). Build it with
// -buildmode=c-archive or c-shared and include embargo.h; examples/c has a
// program that uses it, and README.md "For device teams" the Swift and
// Kotlin call pattern.
//
// It wraps engine/device: one receiver per handle, its sources and
// optional licence proxy, run on the library's own goroutines. No Go type
// crosses the boundary: handles are integers, events are C structs in C
// memory the library owns (embargo.h says for how long).
package main

/*
#include <stdlib.h>
#include <string.h>
#include "embargo.h"

void embargoCallEvent(embargo_event_fn fn, const embargo_event *ev, void *user);
*/
import "C"

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/embargo-live/embargo/engine/device"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/udp"
)

func main() {}

// queueLen bounds the events a receiver opened without a callback holds
// for embargo_poll.
const queueLen = 1024

// recv is one open receiver.
type recv struct {
	d      *device.Device
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's error, set before done closes

	fn   C.embargo_event_fn
	user unsafe.Pointer
	cbMu sync.Mutex // one callback at a time

	queue    chan receiver.Event
	overflow atomic.Uint64

	pollMu  sync.Mutex
	pollMem []unsafe.Pointer // C memory of the last polled event
}

var (
	mu      sync.Mutex
	handles = map[uint64]*recv{}
	nextID  uint64
)

func lookup(h C.embargo_receiver) *recv {
	mu.Lock()
	defer mu.Unlock()
	return handles[uint64(h)]
}

// goString is s, or "" for NULL.
func goString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

// putString copies s into the C buffer buf of n bytes, NUL-terminated and
// cut to fit, and returns len(s).
func putString(buf *C.char, n C.size_t, s string) C.size_t {
	if buf != nil && n > 0 {
		b := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
		b[copy(b[:len(b)-1], s)] = 0
	}
	return C.size_t(len(s))
}

// config turns the C configuration into the device's.
func config(c *C.embargo_config) (device.Config, error) {
	var cfg device.Config
	if c == nil {
		return cfg, errors.New("no configuration (cfg is NULL)")
	}
	cfg.Session, cfg.Token = goString(c.session_url), goString(c.token)
	if ca := goString(c.ca_file); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return cfg, fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("ca_file %s: no PEM certificate in it", ca)
		}
	}
	if f := goString(c.origin_key_file); f != "" {
		k, err := device.ReadOriginKey(f)
		if err != nil {
			return cfg, fmt.Errorf("origin_key_file: %w", err)
		}
		cfg.OriginKey = k
	}
	if f := goString(c.master_key_file); f != "" {
		m, err := device.ReadMasterKey(f)
		if err != nil {
			return cfg, fmt.Errorf("master_key_file: %w", err)
		}
		cfg.Master = m
	}
	for _, s := range fields(goString(c.groups)) {
		g, err := udp.ParseGroup(s)
		if err != nil {
			return cfg, fmt.Errorf("groups: %w", err)
		}
		cfg.Groups = append(cfg.Groups, g)
	}
	for _, s := range fields(goString(c.edges)) {
		e, err := netip.ParseAddrPort(s)
		if err != nil {
			return cfg, fmt.Errorf("edges: %q: want ip:port", s)
		}
		cfg.Edges = append(cfg.Edges, e)
	}
	if c.n_streams > 0 {
		if c.streams == nil {
			return cfg, errors.New("n_streams without streams")
		}
		cfg.Streams = append(cfg.Streams, unsafe.Slice((*uint32)(unsafe.Pointer(c.streams)), int(c.n_streams))...)
	}
	cfg.CatchUp = int(c.catch_up)
	cfg.LicenceProxy = goString(c.licence_proxy)
	return cfg, nil
}

// fields splits a comma-separated list, ignoring spaces and empty items.
func fields(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

//export embargoGoOpen
func embargoGoOpen(c *C.embargo_config, fn C.embargo_event_fn, user unsafe.Pointer, errBuf *C.char, errLen C.size_t) C.embargo_receiver {
	cfg, err := config(c)
	if err != nil {
		putString(errBuf, errLen, err.Error())
		return 0
	}
	r := &recv{fn: fn, user: user, done: make(chan struct{})}
	if fn == nil {
		r.queue = make(chan receiver.Event, queueLen)
	}
	cfg.OnEvent = r.onEvent
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	d, err := device.New(ctx, cfg)
	if err != nil {
		cancel()
		putString(errBuf, errLen, err.Error())
		return 0
	}
	r.d = d
	go func() {
		r.err = d.Run(ctx)
		close(r.done)
	}()
	mu.Lock()
	nextID++
	id := nextID
	handles[id] = r
	mu.Unlock()
	return C.embargo_receiver(id)
}

// onEvent hands a released period to the callback, or queues it for
// embargo_poll.
func (r *recv) onEvent(ev receiver.Event) {
	if r.queue != nil {
		select {
		case r.queue <- ev:
		default:
			r.overflow.Add(1)
		}
		return
	}
	r.cbMu.Lock()
	defer r.cbMu.Unlock()
	out := (*C.embargo_event)(C.calloc(1, C.size_t(unsafe.Sizeof(C.embargo_event{}))))
	mem := fill(out, ev)
	C.embargoCallEvent(r.fn, out, r.user)
	freeAll(append(mem, unsafe.Pointer(out)))
}

// fill writes ev into out, with its keys and resource in C memory, and
// returns that memory for the caller to free.
func fill(out *C.embargo_event, ev receiver.Event) []unsafe.Pointer {
	*out = C.embargo_event{
		stream: C.uint32_t(ev.Stream), period: C.uint64_t(ev.Period),
		release_at: C.int64_t(ev.ReleaseAt), present_at: C.int64_t(ev.PresentAt), arrival: C.int64_t(ev.Arrival),
		arrival_by_kernel: boolC(ev.ArrivalByKernel), catch_up: boolC(ev.CatchUp), edge_id: C.uint32_t(ev.EdgeID),
	}
	putString(&out.from[0], C.size_t(len(out.from)), ev.From.String())
	var mem []unsafe.Pointer
	if n := len(ev.Keys); n > 0 {
		keys := (*C.embargo_key)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.embargo_key{}))))
		dst := unsafe.Slice(keys, n)
		for i, k := range ev.Keys {
			for j := range k.KID {
				dst[i].kid[j] = C.uint8_t(k.KID[j])
				dst[i].key[j] = C.uint8_t(k.Key[j])
			}
		}
		out.keys, out.n_keys = keys, C.size_t(n)
		mem = append(mem, unsafe.Pointer(keys))
	}
	if n := len(ev.Resource); n > 0 {
		res := C.CBytes(ev.Resource)
		out.resource, out.resource_len = (*C.uint8_t)(res), C.size_t(n)
		mem = append(mem, res)
	}
	return mem
}

func boolC(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

func freeAll(mem []unsafe.Pointer) {
	for _, p := range mem {
		C.free(p)
	}
}

//export embargoGoPoll
func embargoGoPoll(h C.embargo_receiver, out *C.embargo_event, timeoutMs C.int) C.int {
	r := lookup(h)
	if r == nil || r.queue == nil || out == nil {
		return -1
	}
	var timeout <-chan time.Time
	if timeoutMs >= 0 {
		t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case ev := <-r.queue:
		r.pollMu.Lock()
		defer r.pollMu.Unlock()
		freeAll(r.pollMem)
		r.pollMem = fill(out, ev)
		return 1
	case <-r.done:
		return -1
	case <-timeout:
		return 0
	}
}

// verificationFailures are the receiver's drop reasons (Stats.Drops) that
// mean a datagram did not verify: a wrong origin key, a forgery, or
// corruption.
var verificationFailures = map[string]bool{"forged": true, "bad-proof": true, "bad-signature": true, "bad-body": true, "wrong-rk": true}

//export embargoGoStats
func embargoGoStats(h C.embargo_receiver, st *C.embargo_stats) C.int {
	r := lookup(h)
	if r == nil || st == nil {
		return -1
	}
	s := r.d.Stats()
	var dropped, failed uint64
	for reason, n := range s.Drops {
		dropped += n
		if verificationFailures[reason] {
			failed += n
		}
	}
	*st = C.embargo_stats{
		delivered: C.uint64_t(s.Delivered), dropped: C.uint64_t(dropped),
		failed_verification: C.uint64_t(failed), queue_overflow: C.uint64_t(r.overflow.Load()),
	}
	return 0
}

//export embargoGoError
func embargoGoError(h C.embargo_receiver, errBuf *C.char, errLen C.size_t) C.size_t {
	r := lookup(h)
	msg := ""
	switch {
	case r == nil:
		msg = "unknown receiver"
	default:
		select {
		case <-r.done:
			msg = "stopped"
			if r.err != nil {
				msg = r.err.Error()
			}
		default:
		}
	}
	return putString(errBuf, errLen, msg)
}

//export embargoGoClose
func embargoGoClose(h C.embargo_receiver) {
	mu.Lock()
	r := handles[uint64(h)]
	delete(handles, uint64(h))
	mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
	r.pollMu.Lock()
	freeAll(r.pollMem)
	r.pollMem = nil
	r.pollMu.Unlock()
}
