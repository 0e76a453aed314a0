//go:build linux

package daemontest

import (
	"errors"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/timedaemons"
	"github.com/embargo-live/embargo/ptp/daemon"
)

// Need skips the test with the reason when a daemon's binary is missing.
func Need(t testing.TB, bins ...string) {
	t.Helper()
	if err := timedaemons.Need(bins...); err != nil {
		t.Skipf("%v (.ci/run installs them as root)", err)
	}
}

// Proc is a daemon running inside a lab host, stopped and started again
// at will; a failure to start fails the test.
type Proc struct {
	*timedaemons.Proc
	t testing.TB
}

// Start starts the daemon again.
func (p Proc) Start() {
	p.t.Helper()
	if err := p.Proc.Start(); err != nil {
		p.t.Fatal(err)
	}
}

// procs wraps started daemons for t: t.Cleanup stops each and logs its
// output if the test failed.
func procs(t testing.TB, err error, ps ...*timedaemons.Proc) []*Proc {
	t.Helper()
	if errors.Is(err, timedaemons.ErrMissing) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []*Proc
	for _, p := range ps {
		t.Cleanup(func() {
			p.Stop()
			if t.Failed() {
				t.Logf("%s output:\n%s", p.Name, p.Output())
			}
		})
		out = append(out, &Proc{Proc: p, t: t})
	}
	return out
}

// Chrony starts a chronyd server (local stratum 1) on server and a chronyd
// client polling it every 250 ms on client, both with -x
// (timedaemons.Chrony), and returns the client's command socket and the
// two daemons.
func Chrony(t testing.TB, server, client *netns.Host) (sock string, srv, cli *Proc) {
	t.Helper()
	sock, s, c, err := timedaemons.Chrony(t.TempDir(), server, client)
	ps := procs(t, err, s, c)
	return sock, ps[0], ps[1]
}

// PTP4L starts a ptp4l master and a slave-only ptp4l over their lab
// interfaces with software timestamping and free_running 1
// (timedaemons.PTP4L), and returns the slave's management socket and the
// two daemons.
func PTP4L(t testing.TB, master, slave *netns.Host) (sock string, mst, slv *Proc) {
	t.Helper()
	sock, m, s, err := timedaemons.PTP4L(t.TempDir(), master, slave)
	ps := procs(t, err, m, s)
	return sock, ps[0], ps[1]
}

// Open retries open every 50 ms until the daemon answers (its socket
// appears once it is up), failing the test after within.
func Open(t testing.TB, within time.Duration, open func() (*daemon.Source, error)) *daemon.Source {
	t.Helper()
	s, err := timedaemons.Open(within, open)
	if err != nil {
		t.Fatalf("daemon never answered: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
