// Package ptp provides clocks that state how wrong they might be, and a wait
// that is never early against them. Every Clock returns a Reading: an interval
// [Earliest, Latest] of TAI nanoseconds that contains true time while the
// clock is synchronized, with the state and a human-readable reason. System
// (CLOCK_REALTIME converted to TAI, bounded by the kernel's adjtimex
// maxerror) and Sim (a deterministic clock with offset, drift, steps, jitter
// and sync loss, for tests) implement it here; package ptp/phc adds PTP
// hardware clocks. WaitUntil (Precise) commit-waits until Earliest ≥ t,
// sleeping first and spinning on a locked OS thread for the last couple of
// milliseconds; Sleeper waits on timers alone, for tests in virtual time
// (testing/synctest). Both refuse to wait on an unsynchronized clock. Guard
// wraps any Clock and checks it against the local oscillator, so that a
// clock which steps or drifts beyond its stated bound cannot make a release
// early.
//
// Time scales. Every int64 instant in embargo's API is TAI nanoseconds since
// 1970-01-01T00:00:00 TAI: readings, releaseAt and presentAt, kernel arrival
// stamps once converted. UTC is carried only as time.Time. The one
// conversion between them is TAIOffset (FromTime, ToTime), with the kernel's
// offset from KernelTAIOffset or System.TAIOffset and DefaultTAIOffset when
// the kernel has none; nothing else adds or hard-codes 37 s. Durations are
// time.Duration. The guard's oscillator readings (WithOscillator) are
// nanoseconds from an arbitrary origin, not instants, and are only ever
// subtracted from each other.
package ptp

// What has run where (keep this current):
//
//   - Run on this project's development VM (Linux 6.18, amd64, 2 vCPU, no
//     /dev/ptp*, kernel clock unsynchronized): every unit test, as root and as
//     an unprivileged user; System against the real adjtimex (which reports
//     STA_UNSYNC, so it reads unsynchronized unless WithAssumeSynchronized);
//     BenchmarkWaitUntil on System with WithAssumeSynchronized.
//   - The logic of Guard, Sim, System (over a fake adjtimex), Sleeper and
//     Precise is tested in virtual time (testing/synctest); Precise's spin
//     is also run on the real clock, checked for never being early only.
//   - Not run: any non-Linux build beyond compiling (GOOS=darwin, windows).
