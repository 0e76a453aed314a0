package ptp

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeKernel is the adjtimex seam: a synthetic answer and a call counter.
type fakeKernel struct {
	kt    kernelTime
	err   error
	calls atomic.Int64
}

func (f *fakeKernel) adjtimex() (kernelTime, error) {
	f.calls.Add(1)
	return f.kt, f.err
}

func bound(r Reading) time.Duration { return time.Duration(r.Latest-r.Earliest) / 2 }
func synced(maxErrUS int64, tai int32) kernelTime {
	return kernelTime{State: 0, Status: 0x2001 /* STA_PLL|STA_NANO */, MaxError: maxErrUS, TAI: tai}
}

func TestSystemStateMapping(t *testing.T) {
	tick := kernelTickAging
	cases := []struct {
		name      string
		kt        kernelTime
		opts      []SystemOption
		state     State
		bound     time.Duration
		offset    TAIOffset
		reasonHas []string
	}{
		{"this VM: unsync, 16s, TAI unset", kernelTime{State: timeERROR, Status: staUNSYNC, MaxError: 16_000_000},
			nil, StateUnsynchronized, 16*time.Second + tick, DefaultTAIOffset,
			[]string{"STA_UNSYNC set", "fallback", "kernel TAI offset unset"}},
		{"synchronized, TAI from kernel", synced(1234, 37), nil,
			StateSynchronized, 1234*time.Microsecond + tick, TAIOffset(37 * time.Second), []string{"synchronized", "from kernel"}},
		{"synchronized, TAI unset uses configured fallback", synced(800, 0), []SystemOption{WithTAIFallback(TAIOffset(36 * time.Second))},
			StateSynchronized, 800*time.Microsecond + tick, TAIOffset(36 * time.Second), []string{"36s fallback"}},
		{"floor adds", synced(100, 37), []SystemOption{WithErrorFloor(50 * time.Microsecond)},
			StateSynchronized, 150*time.Microsecond + tick, TAIOffset(37 * time.Second), nil},
		{"clock hardware error", kernelTime{Status: staCLOCKERR, MaxError: 10}, nil,
			StateUnsynchronized, 10*time.Microsecond + tick, DefaultTAIOffset, []string{"STA_CLOCKERR"}},
		{"TIME_ERROR without flags", kernelTime{State: timeERROR, MaxError: 10}, nil,
			StateUnsynchronized, 10*time.Microsecond + tick, DefaultTAIOffset, []string{"TIME_ERROR"}},
		{"maxerror at limit without flag", synced(ntpPhaseLimitUS, 37), nil,
			StateUnsynchronized, 16*time.Second + tick, TAIOffset(37 * time.Second), []string{"16s limit"}},
		{"leap insertion pending widens 1s", kernelTime{Status: staINS, MaxError: 1000, TAI: 37}, nil,
			StateSynchronized, time.Second + time.Millisecond + tick, TAIOffset(37 * time.Second), []string{"leap second pending"}},
		{"assumed overrides an unsynchronized kernel", kernelTime{State: timeERROR, Status: staUNSYNC, MaxError: 16_000_000},
			[]SystemOption{WithAssumeSynchronized(time.Millisecond)}, StateSynchronized, time.Millisecond, DefaultTAIOffset,
			[]string{"ASSUMED", "operator override"}},
		{"assumed still takes the kernel's TAI offset", kernelTime{Status: staUNSYNC, TAI: 38},
			[]SystemOption{WithAssumeSynchronized(time.Millisecond)}, StateSynchronized, time.Millisecond,
			TAIOffset(38 * time.Second), []string{"ASSUMED", "38s from kernel"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				k := &fakeKernel{kt: tc.kt}
				s, err := newSystem(k.adjtimex, time.Now, tc.opts...)
				if err != nil {
					t.Fatal(err)
				}
				r, err := s.Now()
				if err != nil {
					t.Fatal(err)
				}
				if r.State != tc.state {
					t.Errorf("state %v, want %v (reason %q)", r.State, tc.state, r.Reason)
				}
				if got := bound(r); got != tc.bound {
					t.Errorf("bound %v, want %v", got, tc.bound)
				}
				// Virtual time stands still, so the mid is exactly now in TAI.
				if got, want := r.Mid(), tc.offset.FromTime(time.Now()); got != want {
					t.Errorf("mid %d, want %d (off by %v)", got, want, time.Duration(got-want))
				}
				if got := s.TAIOffset(); got != tc.offset {
					t.Errorf("TAIOffset() = %v, want %v", time.Duration(got), time.Duration(tc.offset))
				}
				for _, sub := range tc.reasonHas {
					if !strings.Contains(r.Reason, sub) {
						t.Errorf("reason %q lacks %q", r.Reason, sub)
					}
				}
			})
		})
	}
}

func TestSystemCacheAging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := &fakeKernel{kt: synced(1000, 37)}
		// The wall clock is virtual time, shifted by back to model a clock
		// that goes backwards (the real one may be stepped).
		var back time.Duration
		s, err := newSystem(k.adjtimex, func() time.Time { return time.Now().Add(-back) }, WithAdjtimexInterval(10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		base := time.Millisecond + kernelTickAging
		steps := []struct {
			advance, back time.Duration
			calls         int64
			bound         time.Duration
		}{
			{0, 0, 1, base},
			{4 * time.Millisecond, 0, 1, base + 2*time.Microsecond},   // 500 ppm of 4 ms
			{5 * time.Millisecond, 0, 1, base + 4500*time.Nanosecond}, // of 9 ms
			{time.Millisecond, 0, 1, base + 5*time.Microsecond},       // 10 ms: the last reuse
			{1, 0, 2, base},                // 10 ms + 1 ns: stale, re-read
			{0, time.Millisecond, 3, base}, // time went back: re-read
			{3*time.Millisecond + 1, time.Millisecond, 3, base + 1500*time.Nanosecond + 1}, // rounded up
		}
		for i, st := range steps {
			time.Sleep(st.advance)
			back = st.back
			r, err := s.Now()
			if err != nil {
				t.Fatal(err)
			}
			if n := k.calls.Load(); n != st.calls {
				t.Errorf("step %d: %d adjtimex calls, want %d", i, n, st.calls)
			}
			if got := bound(r); got != st.bound {
				t.Errorf("step %d: bound %v, want %v", i, got, st.bound)
			}
			if got, want := r.Mid(), TAIOffset(37*time.Second).FromTime(time.Now().Add(-back)); got != want {
				t.Errorf("step %d: mid off by %v", i, time.Duration(got-want))
			}
		}
		// A kernel losing sync is seen at the next refresh, and until then
		// the aged bound stands.
		k.kt = kernelTime{State: timeERROR, Status: staUNSYNC, MaxError: 16_000_000}
		time.Sleep(7*time.Millisecond - 1) // the snapshot is 10 ms old
		if r, _ := s.Now(); r.State != StateSynchronized {
			t.Errorf("within the interval: state %v, want the cached synchronized", r.State)
		}
		time.Sleep(time.Nanosecond)
		if r, _ := s.Now(); r.State != StateUnsynchronized {
			t.Errorf("after refresh: state %v, want unsynchronized", r.State)
		}
	})
}

func TestSystemErrors(t *testing.T) {
	errK := errors.New("EPERM")
	k := &fakeKernel{err: errK}
	if _, err := newSystem(k.adjtimex, time.Now); !errors.Is(err, errK) {
		t.Errorf("adjtimex failure: NewSystem err = %v, want it wrapped", err)
	}
	// The assumed mode needs nothing from the kernel but the TAI offset.
	s, err := newSystem(k.adjtimex, time.Now, WithAssumeSynchronized(0))
	if err != nil {
		t.Fatalf("assumed mode with adjtimex failing: %v", err)
	}
	if r, _ := s.Now(); r.State != StateSynchronized || !strings.Contains(r.Reason, "adjtimex unavailable") {
		t.Errorf("assumed, no adjtimex: %v %q", r.State, r.Reason)
	}
	for _, o := range []SystemOption{WithErrorFloor(-1), WithTAIFallback(-1), WithAssumeSynchronized(-1), WithAdjtimexInterval(-1)} {
		if _, err := newSystem((&fakeKernel{}).adjtimex, time.Now, o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("bad option: err = %v, want ErrInvalidOption", err)
		}
	}
}

// TestSystemReal reads this host's kernel. Its state depends on the host, so
// it checks consistency with the kernel's own answer, not a fixed state. It
// reads the real clock but is not a real-time test: it asserts orderings
// (the reading lies between two wall-clock reads) that no load can change,
// and times nothing.
func TestSystemReal(t *testing.T) {
	kt, kerr := readAdjtimex()
	s, err := NewSystem(WithAdjtimexInterval(0))
	if kerr != nil {
		if err == nil {
			t.Fatalf("adjtimex fails (%v) but NewSystem did not: %v", kerr, err)
		}
		t.Skipf("adjtimex unavailable: %v", kerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	r, err := s.Now()
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	want := mapKernel(kt, true, &systemConfig{taiFallback: DefaultTAIOffset})
	if r.State != want.state {
		t.Errorf("state %v, kernel says %v (%s)", r.State, want.state, want.reason)
	}
	off := s.TAIOffset()
	if mid := r.Mid(); mid < off.FromTime(before) || mid > off.FromTime(after) {
		t.Errorf("mid %d outside the bracketing wall-clock reads", mid)
	}
	if r.Uncertainty() < time.Duration(kt.MaxError)*time.Microsecond {
		t.Errorf("uncertainty %v below kernel maxerror %dµs", r.Uncertainty(), kt.MaxError)
	}
	t.Logf("this host: %v, ±%v, %s", r.State, r.Uncertainty(), r.Reason)
	if r.State == StateUnsynchronized {
		// As on the development VM: the shipped path must refuse.
		_, err := WaitUntil(context.Background(), s, r.Earliest)
		if !errors.Is(err, ErrUnsynchronized) {
			t.Errorf("WaitUntil on an unsynchronized kernel clock: err = %v, want ErrUnsynchronized", err)
		}
	}

	a, err := NewSystem(WithAssumeSynchronized(250 * time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Now(); r.State != StateSynchronized || r.Uncertainty() != 250*time.Microsecond {
		t.Errorf("assumed: %v ±%v, want synchronized ±250µs", r.State, r.Uncertainty())
	}
}
