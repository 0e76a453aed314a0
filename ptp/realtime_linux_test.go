package ptp

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/internal/realtime"
)

// schedSpy is a clock that records, on every read, the scheduling policy
// of the thread reading it: the spin's locked thread.
type schedSpy struct {
	c        Clock
	mu       sync.Mutex
	policies map[uint32]bool
	tid      int
}

func (s *schedSpy) Now() (Reading, error) {
	if a, err := unix.SchedGetAttr(0, 0); err == nil {
		s.mu.Lock()
		s.policies[a.Policy] = true
		if a.Policy == unix.SCHED_FIFO {
			s.tid = unix.Gettid()
		}
		s.mu.Unlock()
	}
	return s.c.Now()
}

// TestPreciseFIFO: with a Priority, Precise spins on a thread at
// SCHED_FIFO and puts the thread back as it was before unlocking it, so no
// goroutine later scheduled on it runs real-time.
func TestPreciseFIFO(t *testing.T) {
	if err := ProbeRealtime(0); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("priority 0: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("SCHED_FIFO needs CAP_SYS_NICE: run as root")
	}
	if err := ProbeRealtime(DefaultPriority); err != nil {
		t.Skipf("SCHED_FIFO refused even as root (a container without CAP_SYS_NICE?): %v", err)
	}
	realtime.Exclusive(t)
	clk, err := NewSystem(WithAssumeSynchronized(time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	spy := &schedSpy{c: clk, policies: map[uint32]bool{}}
	r, _ := clk.Now()
	if _, err := (Precise{Priority: DefaultPriority}).WaitUntil(context.Background(), spy, r.Earliest+int64(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if !spy.policies[unix.SCHED_FIFO] || spy.tid == 0 {
		t.Fatalf("the spin never read the clock at SCHED_FIFO: policies %v", spy.policies)
	}
	if a, err := unix.SchedGetAttr(spy.tid, 0); err != nil || a.Policy == unix.SCHED_FIFO {
		t.Errorf("the spin's thread %d after the wait: %+v, %v; want it back at SCHED_OTHER", spy.tid, a, err)
	}
}

// TestPreciseRealtime: Realtime runs f at SCHED_FIFO and puts the thread
// back; without a Priority it runs nothing and says so.
func TestPreciseRealtime(t *testing.T) {
	if (Precise{}).Realtime(func() { t.Error("ran without a priority") }) {
		t.Error("Realtime without a priority reported true")
	}
	if os.Geteuid() != 0 {
		t.Skip("SCHED_FIFO needs CAP_SYS_NICE: run as root")
	}
	if err := ProbeRealtime(DefaultPriority); err != nil {
		t.Skipf("SCHED_FIFO refused even as root: %v", err)
	}
	var policy uint32 = 99
	tid := 0
	ran := (Precise{Priority: DefaultPriority}).Realtime(func() {
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			policy, tid = a.Policy, unix.Gettid()
		}
	})
	if !ran || policy != unix.SCHED_FIFO {
		t.Fatalf("Realtime ran %v, at policy %d", ran, policy)
	}
	if a, err := unix.SchedGetAttr(tid, 0); err != nil || a.Policy == unix.SCHED_FIFO {
		t.Errorf("thread %d after Realtime: %+v, %v", tid, a, err)
	}
}
