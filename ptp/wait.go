package ptp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"
)

// Defaults for Precise. Go timers wake up to about a millisecond late on a
// busy 2-core VM, so the sleep must end well before the instant; the spin
// covers the rest.
const (
	DefaultSpinThreshold = 2 * time.Millisecond
	DefaultMaxSleep      = 100 * time.Millisecond
	// ctxCheckEvery is how many spin iterations pass between looks at the
	// context: ~0.1–4 ms with reads costing 50 ns–1 µs, prompt enough for
	// cancellation while keeping the spin loop tight.
	ctxCheckEvery = 4096
)

// Waiter waits until a clock's earliest possible time reaches an instant.
// It is the seam through which the engine waits on time: a release
// commit-waits with Precise, a test in virtual time (testing/synctest)
// with Sleeper, whose timers the test's fake clock drives.
type Waiter interface {
	// WaitUntil blocks until c's Earliest ≥ t (never before) and returns
	// the observed lateness (Earliest − t at return). A clock that reads
	// unsynchronized makes it return an error wrapping ErrUnsynchronized;
	// ctx's end returns ctx.Err().
	WaitUntil(ctx context.Context, c Clock, t int64) (time.Duration, error)
}

// Precise is the Waiter a release uses: it sleeps until shortly before the
// instant, then spins on a locked OS thread. The zero value uses the
// defaults; a Precise is a value and is safe to share.
type Precise struct {
	// SpinThreshold is how far ahead of the instant (by Earliest) sleeping
	// stops and spinning on a locked OS thread starts. Larger is more robust
	// against late timer wake-ups and costs more CPU per wait.
	SpinThreshold time.Duration
	// MaxSleep caps one sleep, so that a clock stepping forward or losing
	// sync during a long wait is noticed within MaxSleep.
	MaxSleep time.Duration
	// Priority, from 1 to 99, runs the spin's locked OS thread at
	// SCHED_FIFO at that priority, so that a busy machine cannot pre-empt
	// it in the last milliseconds before the instant; the thread goes back
	// to SCHED_OTHER before it is unlocked. Where the process may not
	// (no CAP_SYS_NICE; see ProbeRealtime) or off Linux, the spin runs at
	// normal priority. Zero (the default) never asks.
	Priority int
}

// DefaultPriority is the SCHED_FIFO priority an edge's release thread
// asks for: above ordinary real-time helpers (1), below the kernel's own
// threads (50) and time daemons' (ptp4l, phc2sys: often 80–90).
const DefaultPriority = 10

// WaitUntil blocks until c's Earliest ≥ t (never before) and returns the
// observed lateness (Earliest − t at return). It sleeps until about
// DefaultSpinThreshold before t as estimated from Earliest, then spins on a
// locked OS thread. If c reads unsynchronized at any point it returns an error
// wrapping ErrUnsynchronized with the reading's reason; ctx cancellation
// returns ctx.Err(). A t already in the past returns at once with a positive
// lateness, provided the reading is synchronized.
//
// Lateness is measured on Earliest, so the true lateness is larger by up to
// twice the clock's uncertainty: that margin is the price of never being early.
func WaitUntil(ctx context.Context, c Clock, t int64) (time.Duration, error) {
	return Precise{}.WaitUntil(ctx, c, t)
}

// WaitUntil is the package-level WaitUntil with w's tuning.
func (w Precise) WaitUntil(ctx context.Context, c Clock, t int64) (time.Duration, error) {
	return w.WaitUntilThen(ctx, c, t, nil)
}

// ThenWaiter is a Waiter that can run the first thing due at the instant
// on the thread that waited for it: Precise, whose spin thread may be at
// SCHED_FIFO. Leaving real-time priority lets the kernel pre-empt the
// thread at once on a busy machine, so what is time-critical (a release's
// first send) must happen before it does.
type ThenWaiter interface {
	Waiter
	// WaitUntilThen is WaitUntil that, when the wait succeeds, calls then
	// with the lateness before returning, on the waiting thread.
	WaitUntilThen(ctx context.Context, c Clock, t int64, then func(late time.Duration)) (time.Duration, error)
}

// WaitUntilThen implements ThenWaiter: then runs on the spin's locked
// thread, at SCHED_FIFO if Priority put it there, before the thread goes
// back to its normal priority.
func (w Precise) WaitUntilThen(ctx context.Context, c Clock, t int64, then func(late time.Duration)) (time.Duration, error) {
	if then == nil {
		then = func(time.Duration) {}
	}
	if c == nil {
		return 0, errNilClock
	}
	threshold := w.SpinThreshold
	if threshold <= 0 {
		threshold = DefaultSpinThreshold
	}
	maxSleep := w.MaxSleep
	if maxSleep <= 0 {
		maxSleep = DefaultMaxSleep
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if prio := w.Priority; prio >= 1 && prio <= 99 {
		if late, ok, err := waitFIFO(ctx, c, t, then, prio, threshold, maxSleep); ok {
			return late, err
		}
		// Not permitted: the usual way, at normal priority.
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	sleep := func(d time.Duration) error {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		}
	}
	return waitLoop(ctx, c, t, then, threshold, maxSleep, sleep, spin)
}

// waitLoop re-reads c until its Earliest reaches t: it sleeps (sleep, at
// most maxSleep at a time) while more than threshold remains, then spins
// (spin) the rest, and calls then with the lateness before returning.
// The sleeps are on the monotonic clock, not on c: a clock that runs fast
// or steps forward is caught by the re-read after at most maxSleep, one
// that runs slow or steps back just makes the loop sleep again.
func waitLoop(ctx context.Context, c Clock, t int64, then func(time.Duration), threshold, maxSleep time.Duration,
	sleep func(time.Duration) error, spin func(context.Context, Clock, int64, time.Duration, func(time.Duration)) (time.Duration, bool, error)) (time.Duration, error) {
	for {
		remaining, err := until(c, t)
		if err != nil {
			return 0, err
		}
		if remaining <= 0 {
			then(negSat(remaining))
			return negSat(remaining), nil
		}
		if remaining > threshold {
			if err := sleep(min(remaining-threshold, maxSleep)); err != nil {
				return 0, err
			}
			continue
		}
		late, resleep, err := spin(ctx, c, t, 2*threshold, then)
		if !resleep {
			return late, err
		}
	}
}

// Sleeper is a Waiter that only sleeps: it re-reads the clock after each
// timer until Earliest ≥ t, so it is as precise as the runtime's timers
// (about a millisecond late on a busy host) and never early. In a
// testing/synctest bubble its timers fire at exactly the virtual instant,
// which makes it the Waiter for engine tests in virtual time; Precise's
// spin would never let a bubble's clock advance.
type Sleeper struct {
	// MaxSleep caps one sleep, so that a clock stepping forward during a
	// long wait is noticed; zero or negative means DefaultMaxSleep.
	MaxSleep time.Duration
}

// WaitUntil implements Waiter.
func (w Sleeper) WaitUntil(ctx context.Context, c Clock, t int64) (time.Duration, error) {
	if c == nil {
		return 0, errNilClock
	}
	maxSleep := w.MaxSleep
	if maxSleep <= 0 { // as Precise: a negative cap would never sleep
		maxSleep = DefaultMaxSleep
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		remaining, err := until(c, t)
		if err != nil || remaining <= 0 {
			return negSat(remaining), err
		}
		timer.Reset(min(remaining, maxSleep))
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-timer.C:
		}
	}
}

var errNilClock = errors.New("ptp: wait: nil clock")

// Realtime runs f on a locked OS thread at SCHED_FIFO w.Priority and
// reports true, or reports false without running f where w has no
// Priority or the process may not (see ProbeRealtime). A WaitUntil inside
// f waits on the same thread, at the same priority. f must not keep the
// CPU for long, since ordinary threads wait while it runs; blocking costs
// nothing (a fan-out worker waits for its jobs in f).
func (w Precise) Realtime(f func()) bool {
	if w.Priority < 1 || w.Priority > 99 {
		return false
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restore, err := setFIFO(w.Priority)
	if err != nil {
		return false
	}
	defer restore()
	f()
	return true
}

// waitFIFO is Precise's wait with a Priority: the whole wait, sleep and
// spin, runs on one locked OS thread at SCHED_FIFO. The sleeps are the
// thread's own (nanosleep, not a Go timer), so the kernel wakes that very
// thread at real-time priority, ahead of whatever keeps a busy machine's
// cores; a Go timer is fired by whichever thread gets there first, at
// normal priority. ctx is looked at between sleeps (at most maxSleep
// apart). ok is false, and nothing done, where SCHED_FIFO is not
// permitted.
func waitFIFO(ctx context.Context, c Clock, t int64, then func(time.Duration), prio int, threshold, maxSleep time.Duration) (late time.Duration, ok bool, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restore, err := setFIFO(prio)
	if err != nil {
		return 0, false, nil
	}
	defer restore() // before the unlock: deferred calls run last-in first-out
	sleep := func(d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		threadSleep(d)
		return ctx.Err()
	}
	late, err = waitLoop(ctx, c, t, then, threshold, maxSleep, sleep, spinLocked)
	return late, true, err
}

// spin busy-reads c on a locked OS thread until Earliest ≥ t, then calls
// then on it. Locking keeps the scheduler from migrating or parking the
// goroutine between the last read and the caller's send. It gives up
// (resleep) if the clock steps back by more than giveUp, so a backward
// step does not burn a core for its size.
func spin(ctx context.Context, c Clock, t int64, giveUp time.Duration, then func(time.Duration)) (late time.Duration, resleep bool, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return spinLocked(ctx, c, t, giveUp, then)
}

// spinLocked is spin's loop, on a thread the caller has locked.
func spinLocked(ctx context.Context, c Clock, t int64, giveUp time.Duration, then func(time.Duration)) (late time.Duration, resleep bool, err error) {
	done := ctx.Done()
	for i := 1; ; i++ {
		remaining, err := until(c, t)
		if err != nil {
			return 0, false, err
		}
		if remaining <= 0 {
			then(negSat(remaining))
			return negSat(remaining), false, nil
		}
		if remaining > giveUp {
			return 0, true, nil
		}
		if i%ctxCheckEvery == 0 {
			select {
			case <-done:
				return 0, false, ctx.Err()
			default:
			}
		}
	}
}

// until reads c and returns how long remains until its Earliest reaches t
// (≤ 0 once it has), or the error that forbids waiting on it (then the
// duration is 0).
func until(c Clock, t int64) (time.Duration, error) {
	r, err := readSynced(c)
	if err != nil {
		return 0, err
	}
	return time.Duration(subSat(t, r.Earliest)), nil
}

// readSynced reads c and turns anything that must not authorize a release
// into an error.
func readSynced(c Clock) (Reading, error) {
	r, err := c.Now()
	if err != nil {
		return r, fmt.Errorf("ptp: wait: read clock: %w", err)
	}
	if r.State == StateUnsynchronized {
		return r, fmt.Errorf("%w: %s", ErrUnsynchronized, r.Reason)
	}
	if r.Earliest > r.Latest {
		return r, fmt.Errorf("ptp: wait: clock returned Earliest %d > Latest %d", r.Earliest, r.Latest)
	}
	return r, nil
}

// subSat returns a−b saturated to the int64 range, so that a broken clock
// returning extreme values cannot wrap a wait into an early return.
func subSat(a, b int64) int64 {
	d := a - b
	// Overflow happened iff a and b have different signs and d's sign
	// differs from a's.
	if (a^b) < 0 && (a^d) < 0 {
		if a < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return d
}

// negSat is −d without the overflow at math.MinInt64.
func negSat(d time.Duration) time.Duration {
	if d == math.MinInt64 {
		return math.MaxInt64
	}
	return -d
}
