package ptp

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/realtime"
)

// benchWaits is the number of waits per method per iteration. Lateness is a
// distribution, not a per-op cost, so one iteration does a fixed sample of
// waits and the metrics describe every wait of every iteration. With the
// default -benchtime=1s an iteration (~10 s) exceeds the budget, so b.Loop
// runs exactly one; ns/op is then the time of 2×benchWaits waits and is not
// meaningful on its own.
const benchWaits = 2000

// BenchmarkWaitUntil compares WaitUntil on the system clock, spinning at
// normal priority and (where the process may: CAP_SYS_NICE) at SCHED_FIFO
// (Precise.Priority), with a plain time.Sleep to the same instants:
// random, 0.2–3 ms ahead, seeded, the methods interleaved so all see the
// same machine noise. Lateness is measured by a fresh clock read where the
// caller acts (Earliest − target): for Precise inside then, on the waiting
// thread before it leaves SCHED_FIFO, where an edge sends; for time.Sleep
// after it returns. Without the privilege the fifo-* figures
// are absent and fifo-permitted is 0.
//
// The system clock is used WithAssumeSynchronized because the development VM
// is not kernel-synchronized; the assumed bound only shifts Earliest, and
// all methods aim at Earliest, so it does not change the comparison.
func BenchmarkWaitUntil(b *testing.B) {
	realtime.Exclusive(b) // its spins, real-time ones included, would disturb other real-time tests
	clk, err := NewSystem(WithAssumeSynchronized(100 * time.Microsecond))
	if err != nil {
		b.Fatal(err)
	}
	fifo := ProbeRealtime(DefaultPriority) == nil
	rng := rand.New(rand.NewPCG(2026, 7))
	var wait, rt, sleep []time.Duration
	var waitEarly, rtEarly, sleepEarly int
	ctx := context.Background()
	read := func() int64 {
		r, err := clk.Now()
		if err != nil {
			b.Fatal(err)
		}
		return r.Earliest
	}
	// w waits for target and returns the clock's Earliest when the caller
	// would act: for Precise, inside then, where an edge sends.
	measure := func(ahead time.Duration, w func(target int64) int64, into *[]time.Duration, early *int) {
		target := read() + int64(ahead)
		late := time.Duration(w(target) - target)
		if late < 0 {
			*early++
		}
		*into = append(*into, late)
	}
	precise := func(p Precise) func(int64) int64 {
		return func(target int64) int64 {
			var at int64
			if _, err := p.WaitUntilThen(ctx, clk, target, func(time.Duration) { at = read() }); err != nil {
				b.Fatal(err)
			}
			return at
		}
	}
	for b.Loop() {
		for range benchWaits {
			ahead := 200*time.Microsecond + time.Duration(rng.Int64N(int64(2800*time.Microsecond)))
			measure(ahead, precise(Precise{}), &wait, &waitEarly)
			if fifo {
				measure(ahead, precise(Precise{Priority: DefaultPriority}), &rt, &rtEarly)
			}
			measure(ahead, func(target int64) int64 { time.Sleep(time.Duration(target - read())); return read() }, &sleep, &sleepEarly)
		}
	}
	wp50, wp99, wmax := percentiles(wait)
	sp50, sp99, smax := percentiles(sleep)
	b.ReportMetric(float64(wp50), "wait-p50-ns")
	b.ReportMetric(float64(wp99), "wait-p99-ns")
	b.ReportMetric(float64(wmax), "wait-max-ns")
	b.ReportMetric(float64(waitEarly), "wait-early")
	b.ReportMetric(float64(sp50), "sleep-p50-ns")
	b.ReportMetric(float64(sp99), "sleep-p99-ns")
	b.ReportMetric(float64(smax), "sleep-max-ns")
	b.ReportMetric(float64(sleepEarly), "sleep-early")
	b.ReportMetric(float64(sp50)/float64(max(wp50, 1)), "p50-ratio")
	b.ReportMetric(float64(len(wait)), "waits")
	permitted := 0.0
	if fifo {
		permitted = 1
		fp50, fp99, fmax := percentiles(rt)
		b.ReportMetric(float64(fp50), "fifo-p50-ns")
		b.ReportMetric(float64(fp99), "fifo-p99-ns")
		b.ReportMetric(float64(fmax), "fifo-max-ns")
		b.ReportMetric(float64(rtEarly), "fifo-early")
	}
	b.ReportMetric(permitted, "fifo-permitted")
	if waitEarly+rtEarly != 0 {
		b.Errorf("WaitUntil returned early %d times (%d at SCHED_FIFO)", waitEarly+rtEarly, rtEarly)
	}
}

// percentiles returns the nearest-rank p50, p99 and max of d (sorted in place).
func percentiles(d []time.Duration) (p50, p99, maxv time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	rank := func(p int) time.Duration { return d[(len(d)*p+99)/100-1] }
	return rank(50), rank(99), d[len(d)-1]
}

func TestPercentiles(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(100 - i) // reversed: percentiles must sort
	}
	if p50, p99, m := percentiles(d); p50 != 50 || p99 != 99 || m != 100 {
		t.Errorf("percentiles(1..100) = %d, %d, %d; want 50, 99, 100", p50, p99, m)
	}
	if p50, p99, m := percentiles([]time.Duration{7}); p50 != 7 || p99 != 7 || m != 7 {
		t.Errorf("single value: %d %d %d", p50, p99, m)
	}
}

// BenchmarkSystemNow is the cost of one read in the spin loop.
func BenchmarkSystemNow(b *testing.B) {
	clk, err := NewSystem(WithAssumeSynchronized(0))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := clk.Now(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSimNow is the cost of one Sim read (mutex, no jitter).
func BenchmarkSimNow(b *testing.B) {
	sim := NewSim(WithUncertainty(time.Microsecond, 0))
	for b.Loop() {
		if _, err := sim.Now(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuardNow is the guard's cost per read on top of its clock's: it
// is read in the commit-wait's spin loop. Most of it is the raw
// clock_gettime(CLOCK_MONOTONIC_RAW) system call, which x/sys makes without
// the vDSO.
func BenchmarkGuardNow(b *testing.B) {
	sim := NewSim(WithUncertainty(100*time.Microsecond, 0))
	g := NewGuard(sim)
	for b.Loop() {
		if _, err := g.Now(); err != nil {
			b.Fatal(err)
		}
	}
}
