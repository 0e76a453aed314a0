package daemon_test

import (
	"testing"
	"time"

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

// TestChronyDaemons: a chronyd server (local stratum 1) and a chronyd
// client (-x) in two namespaces; the source on the client's socket
// releases once chrony is synchronised, holds within the staleness limit
// once the server stops, and releases again when it is back.
func TestChronyDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemons: not in -short")
	}
	daemontest.Need(t, "chronyd")
	realtime.Exclusive(t)
	lab := netnstest.New(t, 2)
	sock, srv, _ := daemontest.Chrony(t, lab.Host(0), lab.Host(1))
	const maxAge = 2 * time.Second
	s := daemontest.Open(t, 10*time.Second, func() (*daemon.Source, error) {
		return daemon.OpenChrony(sock, daemon.WithPoll(250*time.Millisecond), daemon.WithMaxAge(maxAge))
	})
	waitState(t, s, ptp.StateSynchronized, 30*time.Second)
	checkBound(t, s)

	stopped := time.Now()
	srv.Stop()
	waitState(t, s, ptp.StateUnsynchronized, maxAge+5*time.Second)
	t.Logf("server stopped: held after %v: %s", time.Since(stopped).Round(time.Millisecond), s.Status().Reason)

	restarted := time.Now()
	srv.Start()
	waitState(t, s, ptp.StateSynchronized, 30*time.Second)
	t.Logf("server restarted: released after %v", time.Since(restarted).Round(time.Millisecond))
	checkBound(t, s)
}

// TestPTP4LDaemons: ptp4l master and slave over the lab's veths with
// software timestamping and free_running 1; the source on the slave's
// socket releases once a grandmaster is selected, holds when the master is
// gone, and releases when it is back.
func TestPTP4LDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemons: not in -short")
	}
	daemontest.Need(t, "ptp4l")
	realtime.Exclusive(t)
	lab := netnstest.New(t, 2)
	sock, master, _ := daemontest.PTP4L(t, lab.Host(0), lab.Host(1))
	const maxAge = 2 * time.Second
	s := daemontest.Open(t, 10*time.Second, func() (*daemon.Source, error) {
		return daemon.OpenPTP4L(sock, daemon.PTP4LOptions{FreeRunning: true}, daemon.WithPoll(250*time.Millisecond), daemon.WithMaxAge(maxAge))
	})
	waitState(t, s, ptp.StateSynchronized, 20*time.Second)
	checkBound(t, s)

	stopped := time.Now()
	master.Stop()
	st := waitState(t, s, ptp.StateUnsynchronized, maxAge+5*time.Second)
	t.Logf("master stopped: held after %v: %s", time.Since(stopped).Round(time.Millisecond), st.Reason)

	restarted := time.Now()
	master.Start()
	waitState(t, s, ptp.StateSynchronized, 20*time.Second)
	t.Logf("master restarted: released after %v", time.Since(restarted).Round(time.Millisecond))
	checkBound(t, s)
}
