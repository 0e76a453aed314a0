package ptp

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// setFIFO puts the calling OS thread at SCHED_FIFO priority prio and
// returns the function that puts it back as it was. The caller holds the
// thread (runtime.LockOSThread) until it has called restore: a Go thread
// left real-time would run any goroutine at that priority.
func setFIFO(prio int) (restore func(), err error) {
	was, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return nil, fmt.Errorf("sched_getattr: %w", err)
	}
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio)}
	if err := unix.SchedSetAttr(0, attr, 0); err != nil {
		return nil, fmt.Errorf("sched_setattr SCHED_FIFO %d: %w", prio, err)
	}
	return func() {
		was.Size = unix.SizeofSchedAttr
		if unix.SchedSetAttr(0, was, 0) != nil {
			// Cannot happen (lowering one's own priority is always
			// allowed); if it did, at least leave real-time.
			_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0)
		}
	}, nil
}

// ProbeRealtime reports whether this process may run a thread at
// SCHED_FIFO priority prio (it needs CAP_SYS_NICE or an RLIMIT_RTPRIO that
// allows it), by trying on a locked thread and putting it back at once. A
// role calls it at start to say which way its release thread will wait.
func ProbeRealtime(prio int) error {
	if prio < 1 || prio > 99 {
		return fmt.Errorf("%w: SCHED_FIFO priority %d, want 1…99", ErrInvalidOption, prio)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restore, err := setFIFO(prio)
	if err != nil {
		return err
	}
	restore()
	return nil
}

// threadSleep blocks the calling OS thread for d in the kernel, so that
// the kernel wakes this thread, at its priority, when d has passed.
func threadSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.Nanosleep(&ts, nil) // EINTR: the caller re-reads its clock anyway
}
