package daemon

import (
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/facebook/time/ntp/chrony"
	"github.com/facebook/time/ptp/protocol"

	"github.com/embargo-live/embargo/ptp"
)

// The logic tests run in virtual time: inside a synctest bubble time.Now,
// the poller's timer and ptp.SystemTAI are the bubble's clock, and the
// daemon's answers are injected, built the way a daemon would build them
// from the same (virtual) clock.

// localOffset is how far the base clock reads ahead of true time; the
// fake daemons measure it, as real ones measure their clock.
const localOffset = 300 * time.Microsecond

// fakePTP4L answers as ptp4l would: a sync just received, stamped by the
// (software-timestamped, UTC) local clock, the master offset it measured.
type fakePTP4L struct {
	mu     sync.Mutex
	down   bool
	gm     bool
	state  protocol.PortState
	delay  float64 // ns
	acc    protocol.ClockAccuracy
	frozen int64 // when non-zero, the ingress time of the last sync (no new syncs)
}

func newFakePTP4L() *fakePTP4L {
	return &fakePTP4L{gm: true, state: protocol.PortStateSlave, delay: 20_000, acc: protocol.ClockAccuracyMicrosecond100}
}

func (f *fakePTP4L) set(fn func(f *fakePTP4L)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakePTP4L) query(po PTP4LOptions) func() (sample, error) {
	return func() (sample, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			return sample{}, errors.New("connection refused")
		}
		ingress := time.Now().Add(localOffset).UnixNano()
		if f.frozen != 0 {
			ingress = f.frozen
		}
		gm := int32(0)
		if f.gm {
			gm = 1
		}
		d := ptp4lData{
			status: &protocol.TimeStatusNPTLV{MasterOffsetNS: int64(localOffset), IngressTimeNS: ingress, GMPresent: gm},
			port:   &protocol.PortPropertiesNPTLV{PortState: f.state, Timestamping: protocol.TimestampingSoftware},
			cur:    &protocol.CurrentDataSetTLV{MeanPathDelay: protocol.NewTimeInterval(f.delay)},
			parent: &protocol.ParentDataSetTLV{GrandmasterClockQuality: protocol.ClockQuality{ClockAccuracy: f.acc}},
		}
		return ptp4lSample(d, po, ptp.DefaultTAIOffset, 0), nil
	}
}

// testSource starts a source over query with the base a Sim reading
// localOffset ahead of true time.
func testSource(t *testing.T, query func() (sample, error), opts ...Option) (*Source, *ptp.Sim) {
	t.Helper()
	sim := ptp.NewSim(ptp.WithOffset(localOffset))
	cfg, err := newConfig(append([]Option{WithBase(sim), withTAI(ptp.DefaultTAIOffset)}, opts...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := start("fake", cfg, query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sim
}

// read reads s and checks the one property no state may break: a reading
// that authorizes releases contains true time.
func read(t *testing.T, s *Source, sim *ptp.Sim) ptp.Reading {
	t.Helper()
	r, err := s.Now()
	if err != nil {
		t.Fatal(err)
	}
	if tt := sim.True(); r.State != ptp.StateUnsynchronized && (tt < r.Earliest || tt > r.Latest) {
		t.Fatalf("true time %d outside [%d, %d] (%s)", tt, r.Earliest, r.Latest, r.Reason)
	}
	return r
}

func wantState(t *testing.T, r ptp.Reading, want ptp.State, reason string) {
	t.Helper()
	if r.State != want || !strings.Contains(r.Reason, reason) {
		t.Fatalf("reading %v %q, want %v with %q", r.State, r.Reason, want, reason)
	}
}

// TestPTP4LStateMachine walks ptp4l's failures: grandmaster lost → hold;
// back → release; port leaves SLAVE → hold; daemon stopped → release only
// until its data is stale, then hold; restarted → release.
func TestPTP4LStateMachine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePTP4L()
		s, sim := testSource(t, f.query(PTP4LOptions{}), WithPoll(time.Second), WithMaxAge(5*time.Second))
		wantState(t, read(t, s, sim), ptp.StateSynchronized, "port SLAVE")

		f.set(func(f *fakePTP4L) { f.gm = false })
		time.Sleep(time.Second + time.Millisecond) // one poll
		wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "no grandmaster")

		f.set(func(f *fakePTP4L) { f.gm = true })
		time.Sleep(time.Second)
		wantState(t, read(t, s, sim), ptp.StateSynchronized, "port SLAVE")

		f.set(func(f *fakePTP4L) { f.state = protocol.PortStateListening })
		time.Sleep(time.Second)
		wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "not in SLAVE")
		f.set(func(f *fakePTP4L) { f.state = protocol.PortStateSlave })
		time.Sleep(time.Second)
		wantState(t, read(t, s, sim), ptp.StateSynchronized, "port SLAVE")

		f.set(func(f *fakePTP4L) { f.down = true })
		before := read(t, s, sim)
		time.Sleep(4 * time.Second) // still within the 5 s limit
		r := read(t, s, sim)
		wantState(t, r, ptp.StateSynchronized, "last question failed")
		if r.Uncertainty() <= before.Uncertainty() {
			t.Fatalf("bound did not widen with age: %v then %v", before.Uncertainty(), r.Uncertainty())
		}
		time.Sleep(1100 * time.Millisecond)
		wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "staleness limit")

		f.set(func(f *fakePTP4L) { f.down = false })
		time.Sleep(time.Second)
		wantState(t, read(t, s, sim), ptp.StateSynchronized, "port SLAVE")
	})
}

// TestPTP4LStaleSyncs: a daemon that answers but receives no sync (its
// ingress time frozen) goes stale by the age of its data, not of its
// answers.
func TestPTP4LStaleSyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePTP4L()
		s, sim := testSource(t, f.query(PTP4LOptions{}), WithMaxAge(3*time.Second))
		f.set(func(f *fakePTP4L) { f.frozen = time.Now().Add(localOffset).UnixNano() })
		time.Sleep(2 * time.Second)
		st := s.Status()
		if st.State != ptp.StateSynchronized || st.DataAge < 2*time.Second {
			t.Fatalf("status %+v, want synchronized at data age ≥ 2s", st)
		}
		time.Sleep(1100 * time.Millisecond)
		wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "staleness limit")
	})
}

// TestBoundNeverBelowDaemonAndWidens: the bound is the daemon's own
// estimate plus exactly the stated ppm of the data's age, never less.
func TestBoundNeverBelowDaemonAndWidens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePTP4L()
		const ppm = 20
		s, sim := testSource(t, f.query(PTP4LOptions{}), WithDriftPPM(ppm), WithMaxAge(time.Hour), WithPoll(time.Minute))
		est := protocol.ClockAccuracyMicrosecond100.Duration() + localOffset + 20*time.Microsecond
		f.set(func(f *fakePTP4L) { f.down = true })
		var last time.Duration
		for range 10 {
			st := s.Status()
			r := read(t, s, sim)
			want := est + widen(st.DataAge, ppm)
			if r.Uncertainty() != want || r.Uncertainty() < est || r.Uncertainty() < last {
				t.Fatalf("at age %v bound %v, want %v (daemon's %v, previous %v)", st.DataAge, r.Uncertainty(), want, est, last)
			}
			if r.DataAge != st.DataAge {
				t.Fatalf("reading says data age %v, status %v", r.DataAge, st.DataAge)
			}
			last = r.Uncertainty()
			time.Sleep(7 * time.Second)
		}
		if last < est+widen(60*time.Second, ppm) {
			t.Fatalf("bound %v after a minute did not widen by %d ppm", last, ppm)
		}
	})
}

// TestPTP4LFreeRunning: UNCALIBRATED releases only when the operator says
// ptp4l runs free (measuring, not steering).
func TestPTP4LFreeRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, free := range []bool{false, true} {
			f := newFakePTP4L()
			f.state = protocol.PortStateUncalibrated
			s, sim := testSource(t, f.query(PTP4LOptions{FreeRunning: free}))
			want := ptp.StateUnsynchronized
			if free {
				want = ptp.StateSynchronized
			}
			wantState(t, read(t, s, sim), want, "UNCALIBRATED")
			s.Close()
		}
	})
}

func TestPTP4LSample(t *testing.T) {
	base := func() ptp4lData {
		return ptp4lData{
			status: &protocol.TimeStatusNPTLV{MasterOffsetNS: -1500, IngressTimeNS: 1_000_000_000, GMPresent: 1},
			port:   &protocol.PortPropertiesNPTLV{PortState: protocol.PortStateSlave, Timestamping: protocol.TimestampingSoftware},
			cur:    &protocol.CurrentDataSetTLV{MeanPathDelay: protocol.NewTimeInterval(2000.5)},
			parent: &protocol.ParentDataSetTLV{GrandmasterClockQuality: protocol.ClockQuality{ClockAccuracy: protocol.ClockAccuracyMicrosecond1}},
		}
	}
	s := ptp4lSample(base(), PTP4LOptions{}, ptp.DefaultTAIOffset, 0)
	if want := time.Microsecond + 1500 + 2001; !s.synced || s.bound != want {
		t.Fatalf("sample %+v, want synced with bound %v", s, want)
	}
	if want := 1_000_000_000 + int64(ptp.DefaultTAIOffset); s.dataTAI != want {
		t.Fatalf("software ingress %d, want UTC converted to TAI %d", s.dataTAI, want)
	}
	if s := ptp4lSample(base(), PTP4LOptions{}, 0, 4*time.Microsecond); s.bound != time.Microsecond+4*time.Microsecond+2001 {
		t.Fatalf("offset spread 4µs over |offset| 1.5µs: bound %v, want the spread used", s.bound)
	}
	d := base()
	d.parent.GrandmasterClockQuality.ClockAccuracy = protocol.ClockAccuracyUnknown
	if s := ptp4lSample(d, PTP4LOptions{}, 0, 0); s.bound < 25*time.Second {
		t.Fatalf("unknown accuracy bound %v, want ≥ 25s", s.bound)
	}
	d = base()
	d.port.Timestamping = protocol.TimestampingHardware
	if s := ptp4lSample(d, PTP4LOptions{}, 0, 0); s.synced || !strings.Contains(s.summary, "pair the source with the PHC") {
		t.Fatalf("hardware port on the system clock: %+v", s)
	}
	if s := ptp4lSample(d, PTP4LOptions{PHC: true}, ptp.DefaultTAIOffset, 0); !s.synced || s.dataTAI != 1_000_000_000 {
		t.Fatalf("hardware port on its PHC: %+v, want synced, ingress already TAI", s)
	}
	d = base()
	d.status.IngressTimeNS = 0
	if s := ptp4lSample(d, PTP4LOptions{}, 0, 0); s.synced {
		t.Fatalf("no sync yet: %+v", s)
	}
	d = base()
	d.cur.MeanPathDelay = 0
	if s := ptp4lSample(d, PTP4LOptions{}, 0, 0); s.synced {
		t.Fatalf("no path delay yet: %+v", s)
	}
}

// fakeChrony answers "tracking" as chronyd would, its reference time the
// last update.
type fakeChrony struct {
	mu   sync.Mutex
	tr   chrony.Tracking
	down bool
}

func (f *fakeChrony) query() (sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return sample{}, errors.New("connection refused")
	}
	tr := f.tr
	if tr.RefTime.IsZero() {
		tr.RefTime = time.Now().Add(localOffset)
	}
	return chronySample(&tr, ptp.DefaultTAIOffset), nil
}

func syncedTracking() chrony.Tracking {
	return chrony.Tracking{RefID: 0x0a000001, Stratum: 2, CurrentCorrection: localOffset.Seconds(),
		RootDelay: 0.002, RootDispersion: 0.0005, SkewPPM: 0.5, ResidFreqPPM: -0.1, LastUpdateInterval: 2}
}

// TestChronyStateMachine: not synchronised → hold; synchronised →
// release; stopped → hold once stale (4 polls of 5 s: chrony updates every
// 2 s, but it is asked at most every 5 s); back → release.
func TestChronyStateMachine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeChrony{tr: syncedTracking()}
		f.tr.LeapStatus = chronyLeapUnsync
		s, sim := testSource(t, f.query, WithPoll(5*time.Second))
		wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "not synchronised")
		f.mu.Lock()
		f.tr.LeapStatus = chronyLeapNormal
		f.mu.Unlock()
		time.Sleep(2*time.Second + time.Millisecond) // chrony's update interval
		r := read(t, s, sim)
		wantState(t, r, ptp.StateSynchronized, "chrony's bound")
		if est := boundOf(localOffset.Seconds() + 0.0005 + 0.001); r.Uncertainty() < est {
			t.Fatalf("bound %v below chrony's %v", r.Uncertainty(), est)
		}
		f.mu.Lock()
		f.down = true
		f.mu.Unlock()
		time.Sleep(19 * time.Second) // the limit is 20 s
		wantState(t, read(t, s, sim), ptp.StateSynchronized, "last question failed")
		time.Sleep(2 * time.Second)
		wantState(t, read(t, s, sim), ptp.StateUnsynchronized, "staleness limit")
		f.mu.Lock()
		f.down = false
		f.mu.Unlock()
		time.Sleep(5 * time.Second)
		wantState(t, read(t, s, sim), ptp.StateSynchronized, "chrony's bound")
	})
}

func TestChronySample(t *testing.T) {
	tr := syncedTracking()
	tr.CurrentCorrection = -0.000250
	tr.RefTime = time.Unix(1000, 0)
	s := chronySample(&tr, ptp.DefaultTAIOffset)
	// chronyc tracking: |system time offset| + root dispersion + root delay/2.
	if want := 250*time.Microsecond + 500*time.Microsecond + time.Millisecond; !s.synced || s.bound != want {
		t.Fatalf("sample %+v, want synced with bound %v", s, want)
	}
	if s.interval != 2*time.Second || s.skewPPM != 0.6 {
		t.Fatalf("interval %v skew %v, want 2s and 0.6 ppm", s.interval, s.skewPPM)
	}
	tr.LeapStatus = chronyLeapInsert
	if s2 := chronySample(&tr, 0); s2.bound != s.bound+time.Second {
		t.Fatalf("leap pending: bound %v, want %v", s2.bound, s.bound+time.Second)
	}
	tr.LeapStatus, tr.RefID, tr.Stratum = chronyLeapNormal, 0, 0
	if s := chronySample(&tr, 0); s.synced {
		t.Fatalf("no reference: %+v", s)
	}
	tr = syncedTracking()
	tr.RefTime = time.Unix(1000, 0)
	tr.RootDispersion = -1
	if s := chronySample(&tr, 0); s.synced {
		t.Fatalf("negative dispersion: %+v", s)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where client sockets are bound
	if _, err := OpenChrony(dir+"/none.sock", WithBase(ptp.NewSim()), withTAI(0)); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("chrony on a missing socket: %v, want ErrNoAnswer", err)
	}
	if _, err := OpenPTP4L(dir+"/none", PTP4LOptions{}, WithBase(ptp.NewSim()), withTAI(0)); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("ptp4l on a missing socket: %v, want ErrNoAnswer", err)
	}
	if _, err := OpenChrony("", WithPoll(time.Millisecond)); !errors.Is(err, ptp.ErrInvalidOption) {
		t.Fatalf("poll below the minimum: %v, want ErrInvalidOption", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("failed opens left client sockets behind: %v", left)
	}
}

// FuzzChronySample: whatever chrony reports, digesting it never panics,
// and a report the source would release on has a bound no narrower than
// chrony's own estimate.
func FuzzChronySample(f *testing.F) {
	f.Add(0.000025, 0.0005, 0.002, 0.5, -0.1, 2.0, uint16(0), int64(1_700_000_000), uint32(0x0a000001))
	f.Add(-1.0, -1.0, math.NaN(), math.Inf(1), 0.0, math.NaN(), uint16(3), int64(0), uint32(0))
	f.Fuzz(func(t *testing.T, off, disp, delay, skew, resid, interval float64, leap uint16, ref int64, refID uint32) {
		tr := chrony.Tracking{RefID: refID, Stratum: 2, LeapStatus: leap, RefTime: time.Unix(ref, 0), CurrentCorrection: off,
			RootDispersion: disp, RootDelay: delay, SkewPPM: skew, ResidFreqPPM: resid, LastUpdateInterval: interval}
		s := chronySample(&tr, ptp.DefaultTAIOffset)
		if s.interval < 0 || s.bound < 0 {
			t.Fatalf("negative interval %v or bound %v", s.interval, s.bound)
		}
		if est := math.Abs(off) + disp + delay/2; s.synced && !(float64(s.bound) >= min(est*1e9, maxBound)-1) {
			t.Fatalf("synced with bound %v below chrony's %gs", s.bound, est)
		}
	})
}

// FuzzPTP4LSample: likewise for ptp4l's answers.
func FuzzPTP4LSample(f *testing.F) {
	f.Add(int64(-1500), int64(1_000_000_000), int32(1), uint8(protocol.PortStateSlave), uint8(0), int64(2000<<16), uint8(protocol.ClockAccuracyMicrosecond1))
	f.Add(int64(math.MinInt64), int64(-1), int32(0), uint8(255), uint8(1), int64(-1), uint8(0xfe))
	f.Fuzz(func(t *testing.T, off, ingress int64, gm int32, state, ts uint8, delay int64, acc uint8) {
		d := ptp4lData{
			status: &protocol.TimeStatusNPTLV{MasterOffsetNS: off, IngressTimeNS: ingress, GMPresent: gm},
			port:   &protocol.PortPropertiesNPTLV{PortState: protocol.PortState(state), Timestamping: protocol.Timestamping(ts)},
			cur:    &protocol.CurrentDataSetTLV{MeanPathDelay: protocol.TimeInterval(delay)},
			parent: &protocol.ParentDataSetTLV{GrandmasterClockQuality: protocol.ClockQuality{ClockAccuracy: protocol.ClockAccuracy(acc)}},
		}
		for _, po := range []PTP4LOptions{{}, {FreeRunning: true, PHC: true}} {
			s := ptp4lSample(d, po, ptp.DefaultTAIOffset, 0)
			if s.bound < 0 {
				t.Fatalf("negative bound %v", s.bound)
			}
			if s.synced && (s.bound < absDuration(off) || s.bound < d.parent.GrandmasterClockQuality.ClockAccuracy.Duration()) {
				t.Fatalf("synced with bound %v below |offset| %v or the grandmaster's accuracy", s.bound, absDuration(off))
			}
		}
	})
}

// TestOffsetHistory: fbclock's |mean| + stddev over the last 100 syncs,
// each sync counted once however often it is asked about.
func TestOffsetHistory(t *testing.T) {
	var h offsetHistory
	if h.spread() != 0 {
		t.Fatalf("empty history spread %v", h.spread())
	}
	h.add(1, 100)
	h.add(1, 100) // the same sync again
	h.add(0, 999) // no sync
	h.add(2, 300)
	// mean 200, sample stddev √((100²+100²)/1) ≈ 141.42.
	if got := h.spread(); got != 342 {
		t.Fatalf("spread %v, want 342ns (|200| + 141.4, rounded up)", got)
	}
	for i := range 300 {
		h.add(int64(10+i), -1000)
	}
	if len(h.offs) != offsetWindow || h.spread() != 1000 {
		t.Fatalf("after 300 syncs: %d kept, spread %v; want %d and 1µs", len(h.offs), h.spread(), offsetWindow)
	}
}
