// Package etcdtest runs an etcd cluster for tests, from the etcd binary
// on PATH (Debian's etcd-server, which CI installs): members on loopback
// with their data in the test's temporary directory, stopped when the
// test ends. Without the binary, a test skips with that reason. The
// origin links the etcd client only; the server stays out of go.mod.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	procs     []*exec.Cmd
}

// Binary is the etcd executable's path, or an error saying why there is
// none.
func Binary() (string, error) {
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("no etcd binary on PATH (apt-get install etcd-server): %w", err)
	}
	return p, nil
}

// Start runs a cluster of members on loopback and waits until it answers
// a write, or skips t if there is no etcd binary.
func Start(t testing.TB, members int) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skip(err)
	}
	ports := freePorts(t, 2*members)
	c := &Cluster{}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	dir := t.TempDir()
	for i := range members {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, cmd)
		c.Endpoints = append(c.Endpoints, client)
		t.Cleanup(func() {
			c.Stop(i)
			logf.Close()
			if t.Failed() {
				if b, err := os.ReadFile(logf.Name()); err == nil {
					t.Logf("etcd member m%d log (last 2 kB):\n%s", i, b[max(0, len(b)-2048):])
				}
			}
		})
	}
	if err := c.waitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// Stop kills member i, as a crash would.
func (c *Cluster) Stop(i int) {
	if p := c.procs[i]; p.Process != nil && p.ProcessState == nil {
		p.Process.Kill()
		p.Wait()
	}
}

// waitReady writes through every member until each has answered once.
func (c *Cluster) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, ep := range c.Endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = cli.Put(ctx, "/etcdtest/ready", ep)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				cli.Close()
				return fmt.Errorf("etcd member %s not ready after %v: %w", ep, limit, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cli.Close()
	}
	return nil
}

// freePorts finds n loopback TCP ports free now; etcd needs its URLs
// before it listens, so port 0 will not do.
func freePorts(t testing.TB, n int) []int {
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}
