package daemon

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
)

// These tests run the real daemons (Debian's chrony and linuxptp, which
// .ci/run installs as root) in the test's own network namespaces. Neither
// ever touches the host's clock: chronyd runs with -x (no clock control),
// ptp4l with free_running 1 (measure, never steer). Every daemon is killed
// and every namespace deleted in t.Cleanup.

// needDaemon skips with the reason when a daemon's binary is missing.
func needDaemon(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install chrony linuxptp; .ci/run does as root): %v", b, err)
		}
	}
}

// daemonProc is a daemon started inside a lab host.
type daemonProc struct {
	t    *testing.T
	name string
	host *netns.Host
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out bytes.Buffer
}

// startIn starts args inside host's namespace; t.Cleanup stops it.
func startIn(t *testing.T, name string, host *netns.Host, args ...string) *daemonProc {
	t.Helper()
	p := &daemonProc{t: t, name: name, host: host, args: args}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *daemonProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	// ip netns exec execs the daemon in place: the pid is the daemon's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.host.Name}, p.args...)...)
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &p.mu, b: &p.out}, &lockedWriter{mu: &p.mu, b: &p.out}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
}

func (p *daemonProc) stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

func (p *daemonProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(b)
}

// waitState polls the source (every 50 ms, for at most within) until it
// reads want, checking every reading on the way against the host clock,
// which is the true clock here: every daemon measures it.
func waitState(t *testing.T, s *Source, want ptp.State, within time.Duration) Status {
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
func checkBound(t *testing.T, s *Source) {
	t.Helper()
	sn := s.snap.Load()
	st := s.Status()
	if floor := sn.bound + widen(st.DataAge, s.cfg.driftPPM); st.Bound < floor {
		t.Fatalf("bound %v below the daemon's %v widened over %v (%v)", st.Bound, sn.bound, st.DataAge, floor)
	}
	t.Logf("%s: bound %v (daemon's own %v, data age %v)", s.Name(), st.Bound, sn.bound, st.DataAge.Round(time.Millisecond))
}

func writeConf(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChronyDaemons: a chronyd server (local stratum 1) and a chronyd
// client (-x) in two namespaces; the source on the client's socket
// releases once chrony is synchronised, holds within the staleness limit
// once the server stops, and releases again when it is back.
func TestChronyDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("real daemons: not in -short")
	}
	needDaemon(t, "chronyd")
	realtime.Exclusive(t)
	lab := netnstest.New(t, 2)
	// chronyd opens its command socket only in a directory no one but
	// its user and group may enter.
	dir := filepath.Join(t.TempDir(), "chrony")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	server, client := lab.Host(0), lab.Host(1)
	common := func(name string) []string {
		return []string{"bindcmdaddress " + filepath.Join(dir, name+".sock"), "cmdport 0",
			"pidfile " + filepath.Join(dir, name+".pid"), "driftfile " + filepath.Join(dir, name+".drift")}
	}
	writeConf(t, filepath.Join(dir, "server.conf"), append(common("server"), "local stratum 1", "allow all")...)
	writeConf(t, filepath.Join(dir, "client.conf"), append(common("client"), "port 0",
		fmt.Sprintf("server %s iburst minpoll -2 maxpoll -2", server.IPv4))...)
	// -x: never control the clock; -d: stay in the foreground, log to
	// stderr; -u root: no privilege drop, so the temporary directory works.
	srv := startIn(t, "chronyd server", server, "chronyd", "-x", "-d", "-u", "root", "-f", filepath.Join(dir, "server.conf"))
	startIn(t, "chronyd client", client, "chronyd", "-x", "-d", "-u", "root", "-f", filepath.Join(dir, "client.conf"))

	const maxAge = 2 * time.Second
	sock := filepath.Join(dir, "client.sock")
	var s *Source
	deadline := time.Now().Add(10 * time.Second)
	for s == nil { // the socket appears once chronyd is up
		var err error
		if s, err = OpenChrony(sock, WithPoll(250*time.Millisecond), WithMaxAge(maxAge)); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("chronyd client never answered: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer s.Close()
	waitState(t, s, ptp.StateSynchronized, 30*time.Second)
	checkBound(t, s)

	stopped := time.Now()
	srv.stop()
	waitState(t, s, ptp.StateUnsynchronized, maxAge+5*time.Second)
	t.Logf("server stopped: held after %v: %s", time.Since(stopped).Round(time.Millisecond), s.Status().Reason)

	restarted := time.Now()
	srv.start()
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
	needDaemon(t, "ptp4l")
	realtime.Exclusive(t)
	lab := netnstest.New(t, 2)
	dir := t.TempDir()
	fast := []string{"[global]", "free_running 1", "logSyncInterval -2", "logAnnounceInterval -2",
		"logMinDelayReqInterval -2", "announceReceiptTimeout 3"}
	writeConf(t, filepath.Join(dir, "master.cfg"), append(fast, "priority1 10", "clockAccuracy 0x27", // 100 µs
		"uds_address "+filepath.Join(dir, "master.sock"))...)
	writeConf(t, filepath.Join(dir, "slave.cfg"), append(fast, "slaveOnly 1",
		"uds_address "+filepath.Join(dir, "slave.sock"))...)
	master := startIn(t, "ptp4l master", lab.Host(0), "ptp4l", "-S", "-i", lab.Host(0).Ifname, "-f", filepath.Join(dir, "master.cfg"), "-m")
	startIn(t, "ptp4l slave", lab.Host(1), "ptp4l", "-S", "-i", lab.Host(1).Ifname, "-f", filepath.Join(dir, "slave.cfg"), "-m")

	const maxAge = 2 * time.Second
	sock := filepath.Join(dir, "slave.sock")
	var s *Source
	deadline := time.Now().Add(10 * time.Second)
	for s == nil {
		var err error
		if s, err = OpenPTP4L(sock, PTP4LOptions{FreeRunning: true}, WithPoll(250*time.Millisecond), WithMaxAge(maxAge)); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("ptp4l slave never answered: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer s.Close()
	waitState(t, s, ptp.StateSynchronized, 20*time.Second)
	checkBound(t, s)

	stopped := time.Now()
	master.stop()
	st := waitState(t, s, ptp.StateUnsynchronized, maxAge+5*time.Second)
	t.Logf("master stopped: held after %v: %s", time.Since(stopped).Round(time.Millisecond), st.Reason)

	restarted := time.Now()
	master.start()
	waitState(t, s, ptp.StateSynchronized, 20*time.Second)
	t.Logf("master restarted: released after %v", time.Since(restarted).Round(time.Millisecond))
	checkBound(t, s)
}
