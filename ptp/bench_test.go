package ptp

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// benchWaits is the number of waits per method per iteration. Lateness is a
// distribution, not a per-op cost, so one iteration does a fixed sample of
// waits and the metrics describe every wait of every iteration. With the
// default -benchtime=1s an iteration (~10 s) exceeds the budget, so b.Loop
// runs exactly one; ns/op is then the time of 2×benchWaits waits and is not
// meaningful on its own.
const benchWaits = 2000

// BenchmarkWaitUntil compares WaitUntil on the system clock with a plain
// time.Sleep to the same instants: random, 0.2–3 ms ahead, seeded, the two
// methods interleaved so both see the same machine noise. Lateness is
// measured the same way for both, by a fresh clock read after the wait
// returns (Earliest − target), so it includes the cost of returning.
//
// The system clock is used WithAssumeSynchronized because the development VM
// is not kernel-synchronized; the assumed bound only shifts Earliest, and
// both methods aim at Earliest, so it does not change the comparison.
func BenchmarkWaitUntil(b *testing.B) {
	clk, err := NewSystem(WithAssumeSynchronized(100 * time.Microsecond))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2026, 7))
	var wait, sleep []time.Duration
	var waitEarly, sleepEarly int
	ctx := context.Background()
	read := func() int64 {
		r, err := clk.Now()
		if err != nil {
			b.Fatal(err)
		}
		return r.Earliest
	}
	for b.Loop() {
		for range benchWaits {
			ahead := 200*time.Microsecond + time.Duration(rng.Int64N(int64(2800*time.Microsecond)))

			target := read() + int64(ahead)
			if _, err := WaitUntil(ctx, clk, target); err != nil {
				b.Fatal(err)
			}
			late := time.Duration(read() - target)
			if late < 0 {
				waitEarly++
			}
			wait = append(wait, late)

			target = read() + int64(ahead)
			time.Sleep(time.Duration(target - read()))
			late = time.Duration(read() - target)
			if late < 0 {
				sleepEarly++
			}
			sleep = append(sleep, late)
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
	if waitEarly != 0 {
		b.Errorf("WaitUntil returned early %d times", waitEarly)
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
