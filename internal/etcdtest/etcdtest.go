// Package etcdtest runs an etcd cluster for tests, from the etcd binary
// on PATH (Debian's etcd-server, which CI installs): members on loopback,
// or one in each of a lab's network namespaces, with their data in the
// test's temporary directory, killed when the test ends. Without the
// binary, a test skips with that reason. The origin links the etcd client
// only; the server stays out of go.mod.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/freeport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	dial      func(ctx context.Context, addr string) (net.Conn, error)

	mu    sync.Mutex
	procs []*exec.Cmd
}

// Member says where one member runs.
type Member struct {
	Client, Peer string   // host:port of its client and peer listeners
	Wrap         []string // argv its etcd command runs under, e.g. ip netns exec NAME
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

// Start runs a cluster of members on loopback and waits until each
// answers a write, or skips t if there is no etcd binary.
func Start(t testing.TB, members int) *Cluster {
	t.Helper()
	ports := freeport.Get(t, 2*members)
	ms := make([]Member, members)
	for i := range ms {
		ms[i] = Member{Client: fmt.Sprintf("127.0.0.1:%d", ports[2*i]), Peer: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])}
	}
	return StartMembers(t, ms, nil)
}

// StartMembers runs the members and waits until each answers a write,
// reaching them through dial (nil: from this network namespace); it skips
// t if there is no etcd binary.
func StartMembers(t testing.TB, ms []Member, dial func(ctx context.Context, addr string) (net.Conn, error)) *Cluster {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skip(err)
	}
	c := &Cluster{dial: dial}
	var initial []string
	for i, m := range ms {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, m.Peer))
	}
	dir := t.TempDir()
	for i, m := range ms {
		client, peer := "http://"+m.Client, "http://"+m.Peer
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		argv := append(append([]string(nil), m.Wrap...), bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir))
		cmd := exec.Command(argv[0], argv[1:]...)
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

// Stop kills member i, as a crash would, and waits for it to exit.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	p := c.procs[i]
	c.mu.Unlock()
	if p.Process != nil && p.ProcessState == nil {
		p.Process.Kill()
		p.Wait()
	}
}

// client is a client of the members at eps.
func (c *Cluster) client(eps ...string) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop()}
	if c.dial != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(c.dial)}
	}
	return clientv3.New(cfg)
}

// Leader returns the index of the member that leads, by asking each
// member still running.
func (c *Cluster) Leader() (int, error) {
	var errs []error
	for i, ep := range c.Endpoints {
		cli, err := c.client(ep)
		if err != nil {
			return -1, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		cli.Close()
		if err == nil && st.Leader != 0 && st.Header.MemberId == st.Leader {
			return i, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return -1, fmt.Errorf("etcdtest: no member says it leads: %v", errs)
}

// waitReady writes through every member until each has answered once.
func (c *Cluster) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, ep := range c.Endpoints {
		cli, err := c.client(ep)
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
