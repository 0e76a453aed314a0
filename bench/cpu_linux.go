package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's peak resident memory so far, in bytes.
func peakRSS() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss * 1024 // KiB on Linux
}

// currentRSS is the process's resident memory now, in bytes (0 if
// unknown).
func currentRSS() int64 { return statusBytes("VmRSS:") }

// resetPeakRSS restarts the kernel's record of the process's peak
// resident memory (VmHWM, Linux ≥ 4.0) from what is resident now, so that
// runPeakRSS says the peak since; it reports whether it could.
func resetPeakRSS() bool { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil }

// runPeakRSS is the process's peak resident memory since resetPeakRSS (or
// since it began, if that failed), in bytes (0 if unknown).
func runPeakRSS() int64 { return statusBytes("VmHWM:") }

// statusBytes reads a "… kB" field of /proc/self/status, in bytes.
func statusBytes(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// fileLimit is how many files the process may hold open (0 if unknown).
func fileLimit() uint64 {
	var l unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	return l.Cur
}

// raiseFileLimit raises the open-file limit of this process, and so of
// the subscriber processes it starts, towards want: the soft limit up to
// the hard one, and the hard one too where the process may
// (CAP_SYS_RESOURCE, up to fs.nr_open). It returns the soft limit then in
// force (0 if unknown).
func raiseFileLimit(want uint64) uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur >= want {
		return l.Cur
	}
	// syscall.Setrlimit, not x/sys's: it also tells os/exec to let the
	// children inherit the raised limit.
	if l.Max < want && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) == nil {
		return want
	}
	l.Cur = min(want, l.Max)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return fileLimit()
	}
	return l.Cur
}
