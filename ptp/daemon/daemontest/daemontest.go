//go:build linux

package daemontest

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
	"github.com/embargo-live/embargo/ptp/daemon"
)

// Need skips the test with the reason when a daemon's binary is missing.
func Need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install chrony linuxptp; .ci/run does as root): %v", b, err)
		}
	}
}

// Proc is a daemon running inside a lab host, stopped and started again
// at will.
type Proc struct {
	t    testing.TB
	name string
	host *netns.Host
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out bytes.Buffer
}

// start starts args inside host's namespace; t.Cleanup stops it and logs
// its output if the test failed.
func start(t testing.TB, name string, host *netns.Host, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, name: name, host: host, args: args}
	p.Start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

// Start starts the daemon (again).
func (p *Proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	// ip netns exec execs the daemon in place: the pid is the daemon's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.host.Name}, p.args...)...)
	w := &lockedWriter{p}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
}

// Stop kills the daemon and waits for it.
func (p *Proc) Stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// Output is what the daemon has logged.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct{ p *Proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

func writeConf(t testing.TB, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Chrony starts a chronyd server (local stratum 1) on server and a chronyd
// client polling it every 250 ms on client, both with -x, and returns the
// client's command socket and the two daemons.
func Chrony(t testing.TB, server, client *netns.Host) (sock string, srv, cli *Proc) {
	t.Helper()
	Need(t, "chronyd")
	// chronyd opens its command socket only in a directory no one but
	// its user and group may enter.
	dir := filepath.Join(t.TempDir(), "chrony")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	common := func(name string) []string {
		return []string{"bindcmdaddress " + filepath.Join(dir, name+".sock"), "cmdport 0",
			"pidfile " + filepath.Join(dir, name+".pid"), "driftfile " + filepath.Join(dir, name+".drift")}
	}
	writeConf(t, filepath.Join(dir, "server.conf"), append(common("server"), "local stratum 1", "allow all")...)
	writeConf(t, filepath.Join(dir, "client.conf"), append(common("client"), "port 0",
		fmt.Sprintf("server %s iburst minpoll -2 maxpoll -2", server.IPv4))...)
	// -x: never control the clock; -d: stay in the foreground, log to
	// stderr; -u root: no privilege drop, so the temporary directory works.
	srv = start(t, "chronyd server", server, "chronyd", "-x", "-d", "-u", "root", "-f", filepath.Join(dir, "server.conf"))
	cli = start(t, "chronyd client", client, "chronyd", "-x", "-d", "-u", "root", "-f", filepath.Join(dir, "client.conf"))
	return filepath.Join(dir, "client.sock"), srv, cli
}

// PTP4L starts a ptp4l master (clockAccuracy 100 µs) on master and a
// slave-only ptp4l on slave, over their lab interfaces with software
// timestamping, free_running 1 and 4 syncs a second, and returns the
// slave's management socket and the two daemons.
func PTP4L(t testing.TB, master, slave *netns.Host) (sock string, mst, slv *Proc) {
	t.Helper()
	Need(t, "ptp4l")
	dir := t.TempDir()
	fast := []string{"[global]", "free_running 1", "logSyncInterval -2", "logAnnounceInterval -2",
		"logMinDelayReqInterval -2", "announceReceiptTimeout 3"}
	writeConf(t, filepath.Join(dir, "master.cfg"), append(fast, "priority1 10", "clockAccuracy 0x27",
		"uds_address "+filepath.Join(dir, "master.sock"))...)
	writeConf(t, filepath.Join(dir, "slave.cfg"), append(fast, "slaveOnly 1",
		"uds_address "+filepath.Join(dir, "slave.sock"))...)
	mst = start(t, "ptp4l master", master, "ptp4l", "-S", "-i", master.Ifname, "-f", filepath.Join(dir, "master.cfg"), "-m")
	slv = start(t, "ptp4l slave", slave, "ptp4l", "-S", "-i", slave.Ifname, "-f", filepath.Join(dir, "slave.cfg"), "-m")
	return filepath.Join(dir, "slave.sock"), mst, slv
}

// Open retries open every 50 ms until the daemon answers (its socket
// appears once it is up), failing the test after within.
func Open(t testing.TB, within time.Duration, open func() (*daemon.Source, error)) *daemon.Source {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, err := open()
		if err == nil {
			t.Cleanup(func() { s.Close() })
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon never answered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
