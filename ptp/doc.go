// Package ptp provides clocks that state how wrong they might be, and a wait
// that is never early against them. Every Clock returns a Reading: an interval
// [Earliest, Latest] of TAI nanoseconds that contains true time while the
// clock is synchronized, with the state and a human-readable reason. Three
// sources implement it: System (CLOCK_REALTIME converted to TAI, bounded by
// the kernel's adjtimex maxerror), PHC (a PTP hardware clock read through its
// dynamic clock id, bounded by the read window, an error budget and holdover
// drift) and Sim (a deterministic clock with offset, drift, steps, jitter and
// sync loss, for tests). WaitUntil commit-waits until Earliest ≥ t, sleeping
// first and spinning on a locked OS thread for the last couple of
// milliseconds, and refuses to wait on an unsynchronized clock. Guard wraps
// any of them and checks it against the local oscillator, so that a clock
// which steps or drifts beyond its stated bound cannot make a release
// early.
package ptp

// What has run where (keep this current):
//
//   - Run on this project's development VM (Linux 6.18, amd64, 2 vCPU, no
//     /dev/ptp*, kernel clock unsynchronized): every unit test, as root and as
//     an unprivileged user; System against the real adjtimex (which reports
//     STA_UNSYNC, so it reads unsynchronized unless WithAssumeSynchronized);
//     BenchmarkWaitUntil on System with WithAssumeSynchronized; NewPHC's
//     error paths (missing device, interface without a PHC).
//   - Not run on hardware: every PHC read path. clock_gettime on a PHC's
//     dynamic clock id, PTP_SYS_OFFSET_PRECISE (and its probe-and-fall-back)
//     and PTP_SYS_OFFSET_EXTENDED have never executed against a real device.
//     Their arithmetic (read window, error budget, holdover growth, max
//     holdover, best-sample choice, offset sign) is tested on synthetic
//     samples only. TestPHCDevice runs them when a /dev/ptp* exists.
//   - Not run: any non-Linux build beyond compiling (GOOS=darwin, windows).
