package bpf

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// Reason indexes into the kernel's verdict map; reasonNames maps them to
// the exported names.
const (
	reasonPass uint32 = iota
	reasonRelease
	reasonShort
	reasonLong
	reasonMagic
	reasonVersion
	reasonType
	reasonFlags
	reasonLength
	reasonReserved
	reasonInjectedLoss
	reasonUnparsed
	reasonSource
	numReasons
)

var reasonNames = [numReasons]string{
	reasonPass:         VerdictPass,
	reasonRelease:      VerdictRelease,
	reasonShort:        VerdictShort,
	reasonLong:         VerdictLong,
	reasonMagic:        VerdictMagic,
	reasonVersion:      VerdictVersion,
	reasonType:         VerdictType,
	reasonFlags:        VerdictFlags,
	reasonLength:       VerdictLength,
	reasonReserved:     VerdictReserved,
	reasonInjectedLoss: VerdictInjectedLoss,
	reasonUnparsed:     VerdictUnparsed,
	reasonSource:       VerdictSource,
}

// Filter is one loaded socket filter and its maps. Attach it to any number
// of sockets; they all count into the same verdicts, histogram and
// first-arrival map. Its methods are safe for concurrent use.
type Filter struct {
	// mu orders Close after in-flight map reads, so a read never lands on
	// a file descriptor number that Close freed and something else reused.
	mu      sync.RWMutex
	closed  bool
	genuine confirmed // guarded by its own lock
	// maxArrivals bounds the confirmed secrets as the kernel's map bounds
	// the stamps.
	maxArrivals int
	prog        *ebpf.Program
	verdicts    *ebpf.Map // per-CPU u64 per reason
	hist        *ebpf.Map // per-CPU u64 per bucket
	arrivals    *ebpf.Map // LRU: arrivalKey → TAI ns
	config      *ebpf.Map // [0]: loss threshold, [1]: TAI correction, [2]: sources on
	sources     *ebpf.Map // hash: source address (16 bytes, IPv4 mapped) → 1
}

// arrivalKey is the first-arrival map key, host byte order, padded so the
// program's 8-byte stores stay aligned: one entry per socket, period and
// secret (its first arrivalSecretLen bytes, as on the wire).
type arrivalKey struct {
	Stream uint32
	_      uint32
	Period uint64
	Cookie uint64 // the socket's SO_COOKIE
	Secret [arrivalSecretLen]byte
}

// arrivalSecretLen is how much of a RELEASE's secret keys its stamp: enough
// that a forger cannot hit the genuine one's (2⁻⁶⁴ a try).
const arrivalSecretLen = 8

// NewFilter loads the maps and the program. The error wraps ErrNotPermitted
// when the kernel refuses for lack of privilege and ErrNotSupported when it
// lacks a feature the program needs.
func NewFilter(opts ...Option) (*Filter, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("bpf: new filter: %w", err)
	}
	f, err := load(c)
	if err != nil {
		return nil, err
	}
	if c.loss != 0 {
		if err := f.SetLoss(c.loss); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func load(c config) (_ *Filter, err error) {
	f := &Filter{maxArrivals: c.maxArrivals}
	defer func() {
		if err != nil {
			f.closeAll()
		}
	}()
	specs := []struct {
		m    **ebpf.Map
		spec ebpf.MapSpec
	}{
		{&f.verdicts, ebpf.MapSpec{Name: "embargo_verdict", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: numReasons}},
		{&f.hist, ebpf.MapSpec{Name: "embargo_hist", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: numBuckets}},
		{&f.arrivals, ebpf.MapSpec{Name: "embargo_arrival", Type: ebpf.LRUHash, KeySize: 32, ValueSize: 8, MaxEntries: uint32(c.maxArrivals)}},
		{&f.config, ebpf.MapSpec{Name: "embargo_config", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: configSlots}},
		{&f.sources, ebpf.MapSpec{Name: "embargo_source", Type: ebpf.Hash, KeySize: 16, ValueSize: 4, MaxEntries: MaxSources}},
	}
	for _, s := range specs {
		if *s.m, err = ebpf.NewMap(&s.spec); err != nil {
			return nil, classify("create map "+s.spec.Name, err)
		}
	}
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "embargo_filter",
		Type: ebpf.SocketFilter,
		Instructions: program(mapFDs{
			verdicts: f.verdicts.FD(),
			hist:     f.hist.FD(),
			arrivals: f.arrivals.FD(),
			config:   f.config.FD(),
			sources:  f.sources.FD(),
		}),
		// No GPL-only helper is called; the string only has to be valid.
		License: "MIT",
	})
	if err != nil {
		// The verifier says "invalid func" for a helper this kernel lacks;
		// ask the feature probe rather than parse its log.
		if features.HaveProgramHelper(ebpf.SocketFilter, asm.FnKtimeGetTaiNs) != nil {
			return nil, classify("load program", fmt.Errorf("%w: bpf_ktime_get_tai_ns (Linux 6.1): %w", ebpf.ErrNotSupported, err))
		}
		return nil, classify("load program", err)
	}
	return f, nil
}

// classify wraps err with ErrNotPermitted or ErrNotSupported when it is one.
func classify(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("bpf: %s: %w: %w", op, ErrNotPermitted, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("bpf: %s: %w: %w", op, ErrNotSupported, err)
	}
	return fmt.Errorf("bpf: %s: %w", op, err)
}

var available = sync.OnceValue(func() error {
	f, err := load(config{maxArrivals: 64})
	if err != nil {
		return err
	}
	return f.Close()
})

// Available reports whether this process can load the filter, by loading
// a small instance of it once and remembering the answer. nil means
// NewFilter should work; otherwise the error wraps ErrNotPermitted or
// ErrNotSupported (or says what else went wrong), and callers fall back to
// SO_TIMESTAMPNS stamps in a user-space Histogram.
func Available() error { return available() }

// Attach installs the filter on a socket (SO_ATTACH_BPF), replacing any
// filter it had. It stays attached until the socket closes or Detach, even
// after the Filter is closed.
func (f *Filter) Attach(c syscall.Conn) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return fmt.Errorf("bpf: attach: %w", ErrClosed)
	}
	if err := link.AttachSocketFilter(c, f.prog); err != nil {
		return fmt.Errorf("bpf: attach: %w", err)
	}
	return nil
}

// Detach removes whatever filter a socket has (SO_DETACH_BPF).
func (f *Filter) Detach(c syscall.Conn) error {
	if err := link.DetachSocketFilter(c); err != nil {
		return fmt.Errorf("bpf: detach: %w", err)
	}
	return nil
}

// SetLoss sets the fraction p (0 ≤ p ≤ 1) of datagrams dropped on purpose,
// at once for every attached socket.
func (f *Filter) SetLoss(p float64) error {
	t, err := lossThreshold(p)
	if err != nil {
		return fmt.Errorf("bpf: set loss: %w", err)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return fmt.Errorf("bpf: set loss: %w", ErrClosed)
	}
	if err := f.config.Put(uint32(configLoss), t); err != nil {
		return fmt.Errorf("bpf: set loss: %w", err)
	}
	return nil
}

// SetSources makes the filter drop, counted as VerdictSource, every
// datagram whose source address is not one of addrs (IPv4 matches
// IPv4-mapped alike), at once for every attached socket; with no
// address, it drops none for its source. The receiver's user-space twin
// is receiver.Config.Sources. A packet whose network header the filter
// cannot read is passed (and checked there).
func (f *Filter) SetSources(addrs []netip.Addr) error {
	if len(addrs) > MaxSources {
		return fmt.Errorf("bpf: set sources: %w: %d addresses, at most %d", ErrInvalidOption, len(addrs), MaxSources)
	}
	keys := make([][16]byte, 0, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("bpf: set sources: %w: %v is no address", ErrInvalidOption, a)
		}
		keys = append(keys, a.Unmap().As16())
	}
	// The write lock: two calls interleaving could turn the check on
	// half-way through the other's rewrite of the map.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("bpf: set sources: %w", ErrClosed)
	}
	// Off while the map changes, so that no datagram of a kept source is
	// dropped half-way; on again once every address is in.
	if err := f.config.Put(uint32(configSources), uint64(0)); err != nil {
		return fmt.Errorf("bpf: set sources: %w", err)
	}
	var k [16]byte
	var stale [][16]byte
	for it := f.sources.Iterate(); it.Next(&k, new(uint32)); {
		stale = append(stale, k)
	}
	for _, k := range stale {
		if err := f.sources.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf: set sources: %w", err)
		}
	}
	for _, k := range keys {
		if err := f.sources.Put(k, uint32(1)); err != nil {
			return fmt.Errorf("bpf: set sources: %w", err)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := f.config.Put(uint32(configSources), uint64(1)); err != nil {
		return fmt.Errorf("bpf: set sources: %w", err)
	}
	return nil
}

// SetTAIOffset makes the filter stamp in the receiver's TAI: receiver is
// the TAI − UTC offset the receiver converts its socket stamps with, and
// the kernel's CLOCK_TAI uses its own (ptp.KernelTAIOffset, 0 where nothing
// set it), so the difference is added to every kernel stamp before a skew
// is computed.
func (f *Filter) SetTAIOffset(receiver ptp.TAIOffset) error {
	kernel, err := ptp.KernelTAIOffset()
	if err != nil {
		return fmt.Errorf("bpf: set TAI offset: %w", err)
	}
	return f.setTAICorrection(time.Duration(receiver - kernel))
}

// setTAICorrection sets what is added to the kernel's CLOCK_TAI.
func (f *Filter) setTAICorrection(d time.Duration) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return fmt.Errorf("bpf: set TAI offset: %w", ErrClosed)
	}
	if err := f.config.Put(uint32(configTAICorrection), uint64(d)); err != nil {
		return fmt.Errorf("bpf: set TAI offset: %w", err)
	}
	return nil
}

// Verdicts returns the datagram counts by verdict name (the Verdict*
// constants), summed over CPUs, since the filter was loaded.
func (f *Filter) Verdicts() (map[string]uint64, error) {
	counts, err := f.sum(f.verdicts, int(numReasons), "verdicts")
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, numReasons)
	for i, c := range counts {
		out[reasonNames[i]] = c
	}
	return out, nil
}

// Unconfirmed returns the kernel's own arrival-skew histogram: for the
// first RELEASE of each (stream, period, secret) to pass the filter on each
// socket, its kernel arrival (CLOCK_TAI) minus the releaseAt it carries.
// The kernel cannot check a secret, so forged RELEASEs land here too (an
// attacker's early ones in the early bucket): report it apart, never as
// the release skew. Repeats, CATCH-UP retransmissions and RELEASEs with a
// negative releaseAt are not samples.
func (f *Filter) Unconfirmed() (skew.Histogram, error) {
	counts, err := f.sum(f.hist, numBuckets, "histogram")
	return skew.Histogram{Counts: counts}, err
}

// Histogram returns the release skew by kernel stamps, confirmed: for each
// socket's first arrival of a period's genuine secret (one that user space
// confirmed against the period's commitment, Confirm), that arrival minus
// the signed body's releaseAt. Forged RELEASEs are never in it, so it never
// shows a false early. It walks the first-arrival map: for reports, not a
// hot path. A stamp the LRU map evicted before the call is missing.
func (f *Filter) Histogram() (skew.Histogram, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return skew.Histogram{}, fmt.Errorf("bpf: histogram: %w", ErrClosed)
	}
	want := f.genuine.snapshot()
	h := skew.Histogram{Counts: make([]uint64, numBuckets)}
	var (
		k arrivalKey
		t int64
	)
	it := f.arrivals.Iterate()
	for it.Next(&k, &t) {
		if releaseAt, ok := want[secretKey{k.Stream, k.Period, k.Secret}]; ok {
			h.Add(time.Duration(t - releaseAt))
		}
	}
	if err := it.Err(); err != nil {
		return skew.Histogram{}, fmt.Errorf("bpf: histogram: %w", err)
	}
	return h, nil
}

// Confirm records that rk opened the commitment of (stream, period), whose
// signed body says releaseAt: every socket's kernel stamp of that secret
// becomes a sample of Histogram. Receivers call it for each delivered
// period (receiver.Event carries the secret); repeats are harmless. The
// last DefaultMaxArrivals confirmations are kept.
func (f *Filter) Confirm(stream uint32, period uint64, rk *[wire.RKLen]byte, releaseAt int64) {
	var k secretKey
	k.stream, k.period = stream, period
	copy(k.secret[:], rk[:])
	f.genuine.add(k, releaseAt, f.maxArrivals)
}

// secretKey names a period's secret by its kernel-stamped prefix.
type secretKey struct {
	stream uint32
	period uint64
	secret [arrivalSecretLen]byte
}

// confirmed is the bounded set of confirmed secrets, oldest forgotten first.
type confirmed struct {
	mu  sync.Mutex
	at  map[secretKey]int64 // → releaseAt
	log []secretKey
	i   int
}

func (c *confirmed) add(k secretKey, releaseAt int64, bound int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = make(map[secretKey]int64)
	}
	if _, ok := c.at[k]; ok {
		return
	}
	if len(c.log) < bound {
		c.log = append(c.log, k)
	} else {
		delete(c.at, c.log[c.i])
		c.log[c.i] = k
		c.i = (c.i + 1) % bound
	}
	c.at[k] = releaseAt
}

func (c *confirmed) snapshot() map[secretKey]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.at)
}

// sum reads entries [0, n) of a per-CPU array and adds up the CPUs.
func (f *Filter) sum(m *ebpf.Map, n int, what string) ([]uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, fmt.Errorf("bpf: %s: %w", what, ErrClosed)
	}
	out := make([]uint64, n)
	var perCPU []uint64
	for i := range out {
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("bpf: %s: %w", what, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

// FirstArrival returns the kernel's CLOCK_TAI time (ns), plus any TAI
// correction, of the earliest first RELEASE of (stream, period), whatever
// its secret (unconfirmed: a forged one counts), that passed the filter on
// any attached socket, and false if there was none, it was
// CATCH-UP only, or the entries were evicted.
func (f *Filter) FirstArrival(stream uint32, period uint64) (int64, bool, error) {
	all, err := f.FirstArrivals(stream, period)
	if err != nil || len(all) == 0 {
		return 0, false, err
	}
	return slices.Min(all), true, nil
}

// FirstArrivals returns every attached socket's first arrival of the
// period's RELEASE (TAI ns), in no order. It walks the whole map: for
// reports, not for a hot path.
func (f *Filter) FirstArrivals(stream uint32, period uint64) ([]int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, fmt.Errorf("bpf: first arrival: %w", ErrClosed)
	}
	var (
		k   arrivalKey
		t   int64
		out []int64
	)
	it := f.arrivals.Iterate()
	for it.Next(&k, &t) {
		if k.Stream == stream && k.Period == period {
			out = append(out, t)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("bpf: first arrival: %w", err)
	}
	return out, nil
}

// Close releases the program and maps. Sockets the filter is attached to
// keep it (and its maps) alive in the kernel until they close or detach;
// they just cannot be read from here any more. Close is idempotent.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.closeAll()
}

func (f *Filter) closeAll() error {
	var errs []error
	if f.prog != nil {
		errs = append(errs, f.prog.Close())
	}
	for _, m := range []*ebpf.Map{f.verdicts, f.hist, f.arrivals, f.config, f.sources} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bpf: close: %w", err)
	}
	return nil
}
