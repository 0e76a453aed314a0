package netns

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// Do runs f on a locked OS thread switched into the host's network namespace
// and switches the thread back before unlocking it. Sockets f opens belong to
// the host's namespace and keep working after Do returns, from any goroutine:
// open sockets in Do, use them anywhere. Goroutines f starts run in the
// caller's namespace, not the host's, and so does anything that resolves an
// interface name later (an IPv6 zone such as "%eth0"): use indexes outside
// Do. Do returns f's error; a panic in f, or t.FailNow, propagates to the
// caller.
func (h *Host) Do(f func() error) error { return do(h.Name, f) }

// do runs f on a fresh goroutine rather than the caller's: if the switch
// back fails, that goroutine exits still locked and the runtime destroys its
// thread, whereas the caller's goroutine would have to carry on in the wrong
// namespace.
func do(ns string, f func() error) error {
	type outcome struct {
		err      error
		finished bool // false: f panicked or called runtime.Goexit
		panicked bool
		panicVal any
		stack    []byte
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if !o.finished {
				if p := recover(); p != nil {
					o.panicked, o.panicVal, o.stack = true, p, debug.Stack()
				}
			}
			done <- o
		}()
		o.err = inNamespace(ns, f)
		o.finished = true
	}()
	o := <-done
	switch {
	case o.panicked:
		panic(fmt.Sprintf("netns: panic in Do on %s: %v\n\n%s", ns, o.panicVal, o.stack))
	case !o.finished:
		// f called runtime.Goexit, most likely through t.FailNow: end the
		// caller too, as it would have had f run on its goroutine.
		runtime.Goexit()
	}
	return o.err
}

// inNamespace runs f with the current goroutine locked to its thread and the
// thread in namespace ns. It leaves the thread locked if it cannot switch it
// back, so that the thread dies with the goroutine.
func inNamespace(ns string, f func() error) (err error) {
	target, err := unix.Open(filepath.Join(runDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", ns, err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	// Opened after locking, so it names this thread's namespace and not that
	// of whichever thread the goroutine ran on before.
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: open own namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", ns, err)
	}
	defer func() {
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
			err = fmt.Errorf("netns: leave %s: %w (f: %v)", ns, rerr, err)
			return // still locked: see above
		}
		runtime.UnlockOSThread()
	}()
	return f()
}

// probeUnshare creates a network namespace on a throwaway thread and returns
// to the original, which is what `ip netns add` needs to be allowed to do.
func probeUnshare() error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns back: %w", err) // thread dies locked
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	return <-done
}
