package daemon_test

import (
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
	"github.com/embargo-live/embargo/ptp/daemon/daemontest"
)

// These tests run the real daemons (Debian's chrony and linuxptp, which
// .ci/run installs as root) in the test's own network namespaces through
// daemontest, never touching the host's clock. Every daemon is killed and
// every namespace deleted in t.Cleanup.

// waitState polls the source (every 50 ms, for at most within) until it
// reads want, checking every reading on the way against the host clock,
// which is the true clock here: every daemon measures it.
func waitState(t *testing.T, s *daemon.Source, want ptp.State, within time.Duration) daemon.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		before := ptp.SystemTAI()
		r, err := s.Now()
		after := ptp.SystemTAI()
		if err != nil {
			t.Fatal(err)
		}
		if r.State != ptp.StateUnsynchronized && (r.Earliest > after || r.Latest < before) {
			t.Fatalf("reading [%d, %d] misses the host clock [%d, %d]: %s", r.Earliest, r.Latest, before, after, r.Reason)
		}
		if r.State == want {
			return s.Status()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v, want %v: %s", s.Name(), r.State, within, want, r.Reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkBound: the bound is never below the daemon's own estimate of the
// answer it rests on, and exceeds it by at least the stated ppm of age.
func checkBound(t *testing.T, s *daemon.Source) {
	t.Helper()
	own, ppm := daemon.DaemonEstimate(s)
	st := s.Status()
	if floor := own + daemon.Widen(st.DataAge, ppm); st.Bound < floor {
		t.Fatalf("bound %v below the daemon's %v widened over %v (%v)", st.Bound, own, st.DataAge, floor)
	}
	t.Logf("%s: bound %v (daemon's own %v, data age %v)", s.Name(), st.Bound, own, st.DataAge.Round(time.Millisecond))
}

// TestDaemons walks each daemon source's state machine with the real
// daemon. chrony: a chronyd server (local stratum 1) and a chronyd client
// (-x) in two namespaces, the source on the client's socket; ptp4l: master
// and slave over the lab's veths with software timestamping and
// free_running 1, the source on the slave's socket. Each releases once the
// daemon is synchronized, holds within the staleness limit once its
// reference (server, master) stops, and releases again when it is back.
func TestDaemons(t *testing.T) {
	const maxAge = 2 * time.Second
	opts := []daemon.Option{daemon.WithPoll(250 * time.Millisecond), daemon.WithMaxAge(maxAge)}
	for _, c := range []struct {
		name, bin, ref string
		start          func(t testing.TB, a, b *netns.Host) (string, *daemontest.Proc, *daemontest.Proc)
		open           func(sock string) (*daemon.Source, error)
	}{
		{"chrony", "chronyd", "server", daemontest.Chrony, func(sock string) (*daemon.Source, error) {
			return daemon.OpenChrony(sock, opts...)
		}},
		{"ptp4l", "ptp4l", "master", daemontest.PTP4L, func(sock string) (*daemon.Source, error) {
			return daemon.OpenPTP4L(sock, daemon.PTP4LOptions{FreeRunning: true}, opts...)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			daemontest.Need(t, c.bin)
			realtime.Exclusive(t)
			lab := netnstest.New(t, 2)
			sock, ref, _ := c.start(t, lab.Host(0), lab.Host(1))
			s := daemontest.Open(t, 10*time.Second, func() (*daemon.Source, error) { return c.open(sock) })
			walk(t, s, maxAge, c.ref, ref)
		})
	}
}

// walk waits for s to release, stops the daemon's reference (the chrony
// server, the ptp4l master) and waits for s to hold within the staleness
// limit, restarts it and waits for s to release again, checking the bound
// at each release and every reading against the host clock.
func walk(t *testing.T, s *daemon.Source, maxAge time.Duration, what string, ref *daemontest.Proc) {
	t.Helper()
	waitState(t, s, ptp.StateSynchronized, 30*time.Second)
	checkBound(t, s)

	stopped := time.Now()
	ref.Stop()
	st := waitState(t, s, ptp.StateUnsynchronized, maxAge+5*time.Second)
	t.Logf("%s stopped: held after %v: %s", what, time.Since(stopped).Round(time.Millisecond), st.Reason)

	restarted := time.Now()
	ref.Start()
	waitState(t, s, ptp.StateSynchronized, 30*time.Second)
	t.Logf("%s restarted: released after %v", what, time.Since(restarted).Round(time.Millisecond))
	checkBound(t, s)
}
