package timedaemons

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/ptp/daemon"
)

// ErrMissing means a daemon's binary is not installed.
var ErrMissing = errors.New("time daemon not installed (apt-get install chrony linuxptp)")

// Need reports the first of bins that is not on PATH, wrapping ErrMissing.
func Need(bins ...string) error {
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s: %w", b, ErrMissing)
		}
	}
	return nil
}

// Proc is a daemon running inside a lab host, stopped and started again
// at will. Its methods are safe for concurrent use.
type Proc struct {
	Name string
	host *netns.Host
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
	out bytes.Buffer
}

// start starts args inside host's namespace.
func start(name string, host *netns.Host, args ...string) (*Proc, error) {
	p := &Proc{Name: name, host: host, args: args}
	return p, p.Start()
}

// Start starts the daemon (again, after Stop; a running one is left as it is).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	// ip netns exec execs the daemon in place: the pid is the daemon's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.host.Name}, p.args...)...)
	w := &lockedWriter{p}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd = cmd
	return nil
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

func writeConf(path string, lines ...string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// Chrony starts a chronyd server (local stratum 1) on server and a chronyd
// client polling it every 250 ms on client, both with -x, their files in
// a new directory "chrony" in dir, and returns the client's command socket
// and the two daemons. On an error, whatever it started is stopped.
func Chrony(dir string, server, client *netns.Host) (sock string, srv, cli *Proc, err error) {
	if err := Need("chronyd"); err != nil {
		return "", nil, nil, err
	}
	// chronyd opens its command socket only in a directory no one but
	// its user and group may enter.
	dir = filepath.Join(dir, "chrony")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, nil, err
	}
	common := func(name string) []string {
		return []string{"bindcmdaddress " + filepath.Join(dir, name+".sock"), "cmdport 0",
			"pidfile " + filepath.Join(dir, name+".pid"), "driftfile " + filepath.Join(dir, name+".drift")}
	}
	if err := writeConf(filepath.Join(dir, "server.conf"), append(common("server"), "local stratum 1", "allow all")...); err != nil {
		return "", nil, nil, err
	}
	if err := writeConf(filepath.Join(dir, "client.conf"), append(common("client"), "port 0",
		fmt.Sprintf("server %s iburst minpoll -2 maxpoll -2", server.IPv4))...); err != nil {
		return "", nil, nil, err
	}
	// -x: never control the clock; -d: stay in the foreground, log to
	// stderr; -u root: no privilege drop, so the private directory works.
	srv, err = start("chronyd server", server, "chronyd", "-x", "-d", "-u", "root", "-f", filepath.Join(dir, "server.conf"))
	if err != nil {
		return "", nil, nil, err
	}
	cli, err = start("chronyd client", client, "chronyd", "-x", "-d", "-u", "root", "-f", filepath.Join(dir, "client.conf"))
	if err != nil {
		srv.Stop()
		return "", nil, nil, err
	}
	return filepath.Join(dir, "client.sock"), srv, cli, nil
}

// PTP4L starts a ptp4l master (clockAccuracy 100 µs) on master and a
// slave-only ptp4l on slave, over their lab interfaces with software
// timestamping, free_running 1 and 4 syncs a second, their files in dir
// (which must exist), and returns the slave's management socket and the
// two daemons. On an error, whatever it started is stopped.
func PTP4L(dir string, master, slave *netns.Host) (sock string, mst, slv *Proc, err error) {
	if err := Need("ptp4l"); err != nil {
		return "", nil, nil, err
	}
	fast := []string{"[global]", "free_running 1", "logSyncInterval -2", "logAnnounceInterval -2",
		"logMinDelayReqInterval -2", "announceReceiptTimeout 3"}
	if err := writeConf(filepath.Join(dir, "master.cfg"), append(fast, "priority1 10", "clockAccuracy 0x27",
		"uds_address "+filepath.Join(dir, "master.sock"))...); err != nil {
		return "", nil, nil, err
	}
	if err := writeConf(filepath.Join(dir, "slave.cfg"), append(fast, "slaveOnly 1",
		"uds_address "+filepath.Join(dir, "slave.sock"))...); err != nil {
		return "", nil, nil, err
	}
	mst, err = start("ptp4l master", master, "ptp4l", "-S", "-i", master.Ifname, "-f", filepath.Join(dir, "master.cfg"), "-m")
	if err != nil {
		return "", nil, nil, err
	}
	slv, err = start("ptp4l slave", slave, "ptp4l", "-S", "-i", slave.Ifname, "-f", filepath.Join(dir, "slave.cfg"), "-m")
	if err != nil {
		mst.Stop()
		return "", nil, nil, err
	}
	return filepath.Join(dir, "slave.sock"), mst, slv, nil
}

// Open retries open every 50 ms until the daemon answers (its socket
// appears once it is up), returning the last error after within.
func Open(within time.Duration, open func() (*daemon.Source, error)) (*daemon.Source, error) {
	deadline := time.Now().Add(within)
	for {
		s, err := open()
		if err == nil || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
