package bpf

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// run feeds one datagram to the filter through BPF_PROG_TEST_RUN and
// returns the filter's return value and the verdicts it counted.
func run(t *testing.T, f *Filter, dg []byte) (uint32, map[string]uint64) {
	t.Helper()
	before := verdicts(t, f)
	ret, _, err := f.prog.Test(testPacket(dg))
	if err != nil {
		t.Fatalf("prog test run: %v", err)
	}
	return ret, delta(before, verdicts(t, f))
}

func TestVerdicts(t *testing.T) {
	f := newTestFilter(t)
	now := taiNow(t)
	good := release(t, 1, 2, 0, now)
	mutate := func(b []byte, off int, v byte) []byte {
		c := append([]byte(nil), b...)
		c[off] = v
		return c
	}
	badLength := header(wire.TypeAnnounce, 0, 1, 1, 10)
	binary.BigEndian.PutUint16(badLength[offLength:], 11)
	longRelease := header(wire.TypeRelease, 0, 1, 1, 57)
	shortRelease := header(wire.TypeRelease, 0, 1, 1, 55)

	tests := []struct {
		name string
		dg   []byte
		want string
	}{
		{"empty", nil, VerdictShort},
		{"23 bytes", good[:23], VerdictShort},
		{"magic", mutate(good, 0, 'X'), VerdictMagic},
		{"version 0", mutate(good, offVersion, 0), VerdictVersion},
		{"version 2", mutate(good, offVersion, 2), VerdictVersion},
		{"type 0", mutate(good, offType, 0), VerdictType},
		{"type 3", mutate(good, offType, 3), VerdictType},
		{"type 0x0f", mutate(good, offType, 0x0f), VerdictType},
		{"type 0x19", mutate(good, offType, 0x19), VerdictType}, // the first after RESPONSE
		{"type 0xff", mutate(good, offType, 0xff), VerdictType},
		{"critical flag 0x0100", mutate(good, offFlags, 0x01), VerdictFlags},
		{"critical flag 0x8000", mutate(good, offFlags, 0x80), VerdictFlags},
		{"reserved", mutate(good, offReserved+1, 1), VerdictReserved},
		{"length field", badLength, VerdictLength},
		{"release 57-byte payload", longRelease, VerdictLength},
		{"release 55-byte payload", shortRelease, VerdictLength},
		{"release reserved", mutate(good, wire.ReleaseLen-1, 1), VerdictReserved},
		{"release", good, VerdictPass},
		{"release catch-up", release(t, 1, 3, wire.FlagCatchUp, now), VerdictPass},
		{"unknown advisory flag", mutate(good, offFlags+1, 0x80), VerdictPass},
		{"announce", header(wire.TypeAnnounce, 0, 1, 1, 1100), VerdictPass},
		{"empty hello", header(wire.TypeHello, 0, 0, 0, 0), VerdictPass},
		{"keepalive", header(wire.TypeKeepalive, 0, 0, 0, 16), VerdictPass},
		// The largest datagram BPF_PROG_TEST_RUN takes (a page minus skb
		// overhead); "long" is tested on real sockets.
		{"3600-byte announce", header(wire.TypeAnnounce, 0, 1, 1, 3600-wire.HeaderLen), VerdictPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ret, got := run(t, f, tt.dg)
			want := map[string]uint64{tt.want: 1}
			wantRet := uint32(0)
			if tt.want == VerdictPass {
				wantRet = uint32(udpHeaderLen + len(tt.dg))
				if tt.dg[offType] == byte(wire.TypeRelease) {
					want[VerdictRelease] = 1
				}
			}
			if ret != wantRet {
				t.Errorf("return %d, want %d", ret, wantRet)
			}
			if !equalCounts(got, want) {
				t.Errorf("counted %v, want %v", got, want)
			}
		})
	}
}

func equalCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestUnparsed pins the fail-open path: a packet that does not start with
// a matching UDP header (here a whole IPv4 packet, which is what the filter
// would see if skb->data pointed at the network header) passes uninspected.
func TestUnparsed(t *testing.T) {
	f := newTestFilter(t)
	dg := []byte("not even close")
	pkt := make([]byte, 14+20+8+len(dg))
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	pkt[14] = 0x45
	binary.BigEndian.PutUint16(pkt[16:], uint16(20+8+len(dg)))
	pkt[23] = 17 // UDP
	binary.BigEndian.PutUint16(pkt[14+20+4:], uint16(8+len(dg)))
	copy(pkt[14+28:], dg)
	before := verdicts(t, f)
	ret, _, err := f.prog.Test(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(len(pkt) - 14); ret != want {
		t.Errorf("return %d, want %d (pass)", ret, want)
	}
	if got := delta(before, verdicts(t, f)); !equalCounts(got, map[string]uint64{VerdictUnparsed: 1}) {
		t.Errorf("counted %v, want one %s", got, VerdictUnparsed)
	}
}

// wireVerdict is what the receiver's codec says about dg, in verdict names:
// the oracle the kernel program must agree with.
func wireVerdict(dg []byte) string {
	h, err := wire.Peek(dg)
	if err == nil && h.Type == wire.TypeRelease {
		var r wire.Release
		// The filter leaves cross-field checks (negative times) to user
		// space; it only declines to stamp them.
		if err = r.Decode(dg); errors.Is(err, wire.ErrInconsistent) {
			err = nil
		}
	}
	for _, m := range []struct {
		err  error
		name string
	}{
		{wire.ErrTruncated, VerdictShort}, {wire.ErrOversized, VerdictLong},
		{wire.ErrMagic, VerdictMagic}, {wire.ErrVersion, VerdictVersion},
		{wire.ErrUnknownType, VerdictType}, {wire.ErrFlags, VerdictFlags},
		{wire.ErrLength, VerdictLength}, {wire.ErrReserved, VerdictReserved},
	} {
		if errors.Is(err, m.err) {
			return m.name
		}
	}
	if err != nil {
		return "unexpected: " + err.Error()
	}
	return VerdictPass
}

// TestVerdictsAgreeWithWire mutates valid datagrams at random and checks
// that the kernel drops exactly what wire refuses, for the same reason.
func TestVerdictsAgreeWithWire(t *testing.T) {
	f := newTestFilter(t)
	rng := rand.New(rand.NewPCG(1, 2))
	seeds := [][]byte{
		release(t, 9, 99, 0, taiNow(t)),
		header(wire.TypeAnnounce, 0, 1, 1, 200),
		header(wire.TypeSubscribe, 0, 0, 0, 40),
	}
	seen := map[string]int{}
	for i := range 3000 {
		dg := append([]byte(nil), seeds[i%len(seeds)]...)
		switch rng.IntN(4) {
		case 0: // truncate or extend
			if n := rng.IntN(len(dg) + 30); n < len(dg) {
				dg = dg[:n]
			} else {
				dg = append(dg, make([]byte, n-len(dg))...)
			}
		default: // flip bytes, mostly in the header and RELEASE fields that matter
			for range 1 + rng.IntN(2) {
				off := rng.IntN(min(len(dg), 80))
				if rng.IntN(2) == 0 {
					dg[off] = 0
				} else {
					dg[off] ^= 1 << rng.IntN(8)
				}
			}
		}
		want := wireVerdict(dg)
		seen[want]++
		ret, got := run(t, f, dg)
		wantCounts := map[string]uint64{want: 1}
		if want == VerdictPass && dg[offType] == byte(wire.TypeRelease) {
			wantCounts[VerdictRelease] = 1
		}
		if !equalCounts(got, wantCounts) || (ret == 0) != (want != VerdictPass) {
			t.Fatalf("datagram % x: kernel returned %d and counted %v; wire says %s", dg, ret, got, want)
		}
	}
	for _, v := range []string{VerdictPass, VerdictShort, VerdictMagic, VerdictVersion, VerdictType, VerdictFlags, VerdictLength, VerdictReserved} {
		if seen[v] == 0 {
			t.Errorf("no mutation produced %q; the test lost coverage", v)
		}
	}
	t.Logf("cases by verdict: %v", seen)
}

// bucketProgram runs the filter's bucket arithmetic alone on a skew taken
// from the packet, so every edge can be tested with exact values.
func bucketProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	requireBPF(t)
	b := &builder{alias: map[string]string{}}
	b.loadBytesFromCtx()
	b.bucket()
	b.label("hist")
	b.add(asm.Mov.Reg(asm.R0, asm.R2), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, Instructions: b.finish(), License: "MIT"})
	if err != nil {
		t.Fatalf("load bucket program: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// loadBytesFromCtx loads the 8-byte native-endian skew at skb->data into R1.
func (b *builder) loadBytesFromCtx() {
	b.add(asm.Mov.Reg(asm.R6, asm.R1))
	b.loadBytes(0, -8, 8)
	b.add(asm.LoadMem(asm.R1, asm.RFP, -8, asm.DWord))
}

func TestBucketProgramMatchesGo(t *testing.T) {
	p := bucketProgram(t)
	var ds []time.Duration
	for i := range numBuckets {
		lo, hi := skew.BucketBounds(i)
		ds = append(ds, lo, lo+1, hi-1, hi)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		ds = append(ds, time.Duration(rng.Int64N(int64(20*time.Second)))-time.Millisecond)
		ds = append(ds, time.Duration(math.Exp(rng.Float64()*40))) // log-uniform, 1 ns … 7 h
	}
	ds = append(ds, math.MinInt64, -1, 0, math.MaxInt64)
	in := make([]byte, 14+8)
	for _, d := range ds {
		binary.NativeEndian.PutUint64(in[14:], uint64(d))
		got, _, err := p.Test(in)
		if err != nil {
			t.Fatal(err)
		}
		if want := skew.Bucket(d); int(got) != want {
			t.Fatalf("skew %v (%d ns): kernel bucket %d, Go bucket %d", d, int64(d), got, want)
		}
	}
}

// TestBucketAgreesWithKernel runs the whole filter on RELEASEs whose
// releaseAt puts their skew in every bucket, and checks that the bucket the
// kernel counted is skew.Bucket(first arrival − releaseAt), the skew the kernel
// itself stamped.
func TestBucketAgreesWithKernel(t *testing.T) {
	f := newTestFilter(t)
	hit := map[int]bool{}
	for i := range numBuckets {
		var d time.Duration
		switch lo, hi := skew.BucketBounds(i); i {
		case 0:
			d = -time.Second
		case overflowBucket:
			d = time.Minute
		default:
			d = (lo + hi) / 2
		}
		period := uint64(1000 + i)
		before := histogram(t, f)
		releaseAt := taiNow(t) - int64(d)
		if ret, _, err := f.prog.Test(testPacket(release(t, 5, period, 0, releaseAt))); err != nil || ret == 0 {
			t.Fatalf("test run: ret %d, %v", ret, err)
		}
		arrival, ok, err := f.FirstArrival(5, period)
		if err != nil || !ok {
			t.Fatalf("FirstArrival(5, %d) = %v, %v", period, ok, err)
		}
		after := histogram(t, f)
		got := -1
		for j := range after.Counts {
			if after.Counts[j] != before.Counts[j] {
				if got >= 0 || after.Counts[j]-before.Counts[j] != 1 {
					t.Fatalf("more than one count changed: %v → %v", before.Counts, after.Counts)
				}
				got = j
			}
		}
		dd := time.Duration(arrival - releaseAt)
		if want := skew.Bucket(dd); got != want {
			t.Errorf("aimed at bucket %d: kernel skew %v, kernel counted bucket %d, Bucket says %d", i, dd, got, want)
		}
		hit[got] = true
	}
	// Aiming at the middle misses the 1 µs buckets by the few µs the test
	// run takes, so not every bucket is hit; most must be.
	if len(hit) < numBuckets*3/4 {
		t.Errorf("only %d of %d buckets hit", len(hit), numBuckets)
	}
}

func TestFirstArrivalIsFirst(t *testing.T) {
	f := newTestFilter(t)
	before := taiNow(t)
	dg := release(t, 77, 1, 0, before)
	var afterFirst int64
	for i := range 3 {
		if _, _, err := f.prog.Test(testPacket(dg)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			afterFirst = taiNow(t)
		}
	}
	first, ok, err := f.FirstArrival(77, 1)
	if err != nil || !ok {
		t.Fatalf("FirstArrival: %v, %v", ok, err)
	}
	// The repeats run after afterFirst was read: a stamp past it is theirs.
	if first < before || first > afterFirst {
		t.Errorf("first arrival %d outside the first run [%d, %d]: a later repeat overwrote it?", first, before, afterFirst)
	}
	if _, ok, _ := f.FirstArrival(77, 2); ok {
		t.Error("FirstArrival found a period never sent")
	}
	// CATCH-UP and negative releaseAt pass but are not stamped.
	f.prog.Test(testPacket(release(t, 78, 1, wire.FlagCatchUp, before)))
	neg := release(t, 79, 1, 0, before)
	neg[offReleaseAt] = 0x80
	f.prog.Test(testPacket(neg))
	for _, s := range []uint32{78, 79} {
		if _, ok, _ := f.FirstArrival(s, 1); ok {
			t.Errorf("stream %d stamped", s)
		}
	}
	// Each test run is a fresh socket (its own cookie): three runs are
	// three clients' samples. One socket's repeats: TestManySockets.
	if h := histogram(t, f); h.Total() != 3 {
		t.Errorf("histogram total %d, want 3", h.Total())
	}
}

func TestOptionsAndClose(t *testing.T) {
	for _, p := range []float64{-0.1, 1.1, math.NaN()} {
		if _, err := NewFilter(WithLoss(p)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithLoss(%v): %v, want ErrInvalidOption", p, err)
		}
	}
	if _, err := NewFilter(WithMaxArrivals(0)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithMaxArrivals(0): %v, want ErrInvalidOption", err)
	}
	f := newTestFilter(t, WithLoss(1), WithMaxArrivals(128))
	if ret, got := run(t, f, header(wire.TypeHello, 0, 0, 0, 0)); ret != 0 || !equalCounts(got, map[string]uint64{VerdictInjectedLoss: 1}) {
		t.Errorf("WithLoss(1): return %d, counted %v", ret, got)
	}
	if err := f.SetLoss(2); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("SetLoss(2): %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Verdicts(); !errors.Is(err, ErrClosed) {
		t.Errorf("Verdicts after Close: %v", err)
	}
	if _, _, err := f.FirstArrival(1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("FirstArrival after Close: %v", err)
	}
	if err := f.SetLoss(0); !errors.Is(err, ErrClosed) {
		t.Errorf("SetLoss after Close: %v", err)
	}
}

// TestTAICorrection: with the receiver's TAI ahead of the kernel's
// CLOCK_TAI (an unset kernel TAI offset), a RELEASE stamped against the
// receiver's TAI counts as early until the correction is set, and lands in
// the right bucket after.
func TestTAICorrection(t *testing.T) {
	realtime.Exclusive(t)
	f := newTestFilter(t)
	const ahead = 37 * time.Second
	const late = 5 * time.Millisecond
	run := func(period uint64) int {
		before := histogram(t, f)
		releaseAt := taiNow(t) + int64(ahead) - int64(late)
		if ret, _, err := f.prog.Test(testPacket(release(t, 6, period, 0, releaseAt))); err != nil || ret == 0 {
			t.Fatalf("test run: ret %d, %v", ret, err)
		}
		after := histogram(t, f)
		for j := range after.Counts {
			if after.Counts[j] != before.Counts[j] {
				return j
			}
		}
		t.Fatal("nothing counted")
		return -1
	}
	if got := run(1); got != 0 {
		t.Fatalf("uncorrected: bucket %d, want 0 (early)", got)
	}
	kernel, err := ptp.KernelTAIOffset()
	if err != nil || kernel < 0 || time.Duration(kernel) > time.Minute {
		t.Fatalf("kernel TAI offset %v, %v", time.Duration(kernel), err)
	}
	if err := f.SetTAIOffset(kernel + ptp.TAIOffset(ahead)); err != nil {
		t.Fatal(err)
	}
	lo, _ := skew.BucketBounds(skew.Bucket(late))
	if got := run(2); got < skew.Bucket(lo) || got > skew.Bucket(late)+1 {
		t.Fatalf("corrected: bucket %d, want about %d (%v)", got, skew.Bucket(late), late)
	}
}

// Forged early RELEASEs of a period are stamped apart from the genuine
// one: the kernel's own histogram shows them (Unconfirmed), the confirmed
// histogram holds only the secret user space confirmed, so an attacker's
// early RELEASEs never make it report an early arrival.
func TestConfirmedHistogramNeverEarly(t *testing.T) {
	f := newTestFilter(t)
	now := taiNow(t)
	genuine := release(t, 9, 1, 0, now-int64(time.Millisecond))
	for i := range 50 {
		forged := release(t, 9, 1, 0, now+int64(time.Minute)) // "arrived a minute early"
		forged[wire.HeaderLen] = byte(0x80 + i)
		if _, _, err := f.prog.Test(testPacket(forged)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.prog.Test(testPacket(genuine)); err != nil {
		t.Fatal(err)
	}
	if h := histogram(t, f); h.Counts[0] != 50 || h.Total() != 51 {
		t.Fatalf("unconfirmed: %d early of %d, want the 50 forged of 51", h.Counts[0], h.Total())
	}
	h, err := f.Histogram()
	if err != nil || h.Total() != 0 {
		t.Fatalf("confirmed before Confirm: %v, %v", h, err)
	}
	var rk [wire.RKLen]byte
	copy(rk[:], genuine[wire.HeaderLen:])
	f.Confirm(9, 1, &rk, now-int64(time.Millisecond))
	f.Confirm(9, 1, &rk, now-int64(time.Millisecond)) // a second receiver's event
	h, err = f.Histogram()
	if err != nil || h.Total() != 1 || h.Counts[0] != 0 || h.Quantile(1) < time.Millisecond {
		t.Fatalf("confirmed: %v, %v; want one sample, ≥ 1 ms late", h, err)
	}
}
