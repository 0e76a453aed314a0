package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/syncbuf"
	"github.com/embargo-live/embargo/internal/wait"
)

// background runs `embargo args...` until ctx ends: its output (stdout
// and stderr) so far, and its exit code once it has exited.
func background(ctx context.Context, args ...string) (*syncbuf.Buffer, chan int) {
	out, done := &syncbuf.Buffer{}, make(chan int, 1)
	go func() { done <- run(ctx, args, out, out) }()
	return out, done
}

func keysDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keys", "-dir", dir}, &out, &out); code != 0 {
		t.Fatalf("keys: exit %d: %s", code, out.String())
	}
	return dir
}

// TestEdgeToRecv runs `embargo edge` and `embargo recv` against each other
// on a loopback group: the receiver prints both periods with their keys,
// a receiver without the master key prints nothing and counts why.
func TestEdgeToRecv(t *testing.T) {
	realtime.Exclusive(t)
	dir := keysDir(t)
	group := fmt.Sprintf("239.255.77.71:%d", freeport.One(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	type result struct {
		code        int
		out, errout *syncbuf.Buffer
	}
	start := func(ctx context.Context, args ...string) (chan result, *syncbuf.Buffer) {
		done := make(chan result, 1)
		r := result{out: &syncbuf.Buffer{}, errout: &syncbuf.Buffer{}}
		go func() {
			r.code = run(ctx, args, r.out, r.errout)
			done <- r
		}()
		return done, r.errout
	}
	recv, recvErr := start(ctx, "recv", "-group", group, "-pub", filepath.Join(dir, originPubFile), "-master", filepath.Join(dir, masterKeyFile), "-periods", "2", "-json")
	blindCtx, blindCancel := context.WithCancel(ctx)
	blind, blindErr := start(blindCtx, "recv", "-group", group, "-pub", filepath.Join(dir, originPubFile), "-master", "")
	// Each receiver says which arrival stamps it uses once device.New has
	// joined its group: wait for that line, not for a guessed time.
	for _, w := range []*syncbuf.Buffer{recvErr, blindErr} {
		wait.For(t, 15*time.Second, "a receiver to join the group", func() bool { return strings.Contains(w.String(), "stamps") })
	}
	// More periods than the receiver waits for: on a loaded machine it may
	// join after the first release.
	edge := run(ctx, []string{"edge", "-keys", dir, "-group", group, "-period", "200ms", "-lead", "150ms", "-periods", "4", "-assume-synced", "1ms", "-log", "warn"}, &syncbuf.Buffer{}, &syncbuf.Buffer{})
	if edge != 0 {
		t.Fatalf("edge: exit %d", edge)
	}
	r := <-recv
	if r.code != 0 {
		t.Fatalf("recv: exit %d: %s", r.code, r.errout.String())
	}
	lines := strings.Split(strings.TrimSpace(r.out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"kids":[`) || strings.Contains(lines[0], `"latenessNs":-`) {
		t.Fatalf("recv printed:\n%s", r.out.String())
	}
	// The blind receiver heard every period the other one did: period 0
	// was complete (body and RELEASE) at least two periods (400 ms) before
	// the edge returned, and the blind receiver has read since.
	blindCancel()
	b := <-blind
	if b.code != 0 || b.out.String() != "" || !strings.Contains(b.errout.String(), "no-master-key") {
		t.Fatalf("receiver without master key: exit %d, out %q, err %q", b.code, b.out.String(), b.errout.String())
	}
}

func TestKeysRefusesOverwrite(t *testing.T) {
	dir := keysDir(t)
	before, err := os.ReadFile(filepath.Join(dir, masterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keys", "-dir", dir}, &out, &out); code != 1 || !strings.Contains(out.String(), "-force") {
		t.Fatalf("second keys: exit %d: %s", code, out.String())
	}
	after, _ := os.ReadFile(filepath.Join(dir, masterKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("master key overwritten")
	}
	if fi, err := os.Stat(filepath.Join(dir, originKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("origin key mode %v, %v", fi.Mode(), err)
	}
	out.Reset()
	if code := run(context.Background(), []string{"keys", "-dir", dir, "-force"}, &out, &out); code != 0 {
		t.Fatalf("keys -force: exit %d: %s", code, out.String())
	}
}

func TestRoleFlagErrors(t *testing.T) {
	dir := keysDir(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"edge", "-keys", t.TempDir()}, 1, "origin.key"},
		{[]string{"edge", "-keys", dir, "-group", "10.0.0.1:7171"}, 2, "not a multicast address"},
		{[]string{"edge", "-keys", dir, "-lead", "1h"}, 1, "announce lead"},
		{[]string{"origin", "-state", t.TempDir(), "-lead", "500ms"}, 1, "-lead 500ms is below the minimum 1s"},
		{[]string{"publish", "-file", os.DevNull}, 1, "-at or -in"},
		{[]string{"publish", "-file", os.DevNull, "-at", "tomorrow"}, 1, "RFC 3339"},
		{[]string{"origin", "-state", t.TempDir(), "-lead", "20s"}, 1, "-lead 20s with -period 2s"},
		{[]string{"recv", "-pub", filepath.Join(dir, masterKeyFile)}, 1, "PUBLIC KEY"},
		{[]string{"recv", "-pub", filepath.Join(dir, originPubFile), "-streams", "x"}, 2, "stream"},
		{[]string{"edge", "-h"}, 0, "never early"},
		{[]string{"edge", "-keys", dir, "-multicast=false"}, 2, "-multicast=false needs -unicast"},
		{[]string{"edge", "-keys", dir, "-origin-timeout", "0"}, 2, "-origin-timeout 0s: want > 0"},
		{[]string{"edge", "-keys", dir, "-multicast=false", "-unicast", "127.0.0.1:0", "-group", "239.1.2.3:7171"}, 2, "contradict"},
	} {
		var out bytes.Buffer
		code := run(context.Background(), c.args, &out, &out)
		if code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q", c.args, code, out.String())
		}
	}
}

// TestEdgeToRecvUnicast: the same over a unicast session, with the
// receiver started before the edge is up (it retries the handshake).
func TestEdgeToRecvUnicast(t *testing.T) {
	realtime.Exclusive(t)
	dir := keysDir(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.One(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, errout := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	recv := make(chan int, 1)
	go func() {
		recv <- run(ctx, []string{"recv", "-edge", addr, "-pub", filepath.Join(dir, originPubFile), "-master", filepath.Join(dir, masterKeyFile), "-periods", "3"}, out, errout)
	}()
	edgeErr := &syncbuf.Buffer{}
	if code := run(ctx, []string{"edge", "-keys", dir, "-unicast", addr, "-period", "300ms", "-lead", "250ms", "-periods", "5", "-assume-synced", "1ms", "-log", "warn"}, &syncbuf.Buffer{}, edgeErr); code != 0 {
		t.Fatalf("edge: exit %d: %s", code, edgeErr.String())
	}
	if code := <-recv; code != 0 {
		t.Fatalf("recv: exit %d: %s", code, errout.String())
	}
	if n := strings.Count(out.String(), "keys (kid"); n != 3 {
		t.Fatalf("recv printed %d periods:\n%s%s", n, out.String(), errout.String())
	}
}

// TestRecvSpeaksUp: a receiver given the wrong origin key says so within
// the diagnosis interval, naming where the datagrams came from, and exits
// non-zero having delivered nothing, also when stopped by a signal (here:
// its context); flag combinations that cannot work are refused at once.
// It used to print nothing for the whole run and exit 0.
func TestRecvSpeaksUp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"recv", "-session", "https://127.0.0.1:1/v1/session"}, "-session without -token"},
		{[]string{"recv", "-token", "t"}, "-token, -token-file and -ca only work with -session"},
		{[]string{"recv", "-session", "https://127.0.0.1:1/v1/session", "-token", "t", "-pub", "x"}, "contradict -session"},
	} {
		var out bytes.Buffer
		if code := run(context.Background(), c.args, &out, &out); code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q", c.args, code, out.String())
		}
	}

	realtime.Exclusive(t)
	dir, wrong := keysDir(t), keysDir(t)
	group := fmt.Sprintf("239.255.77.72:%d", freeport.One(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recvCtx, stopRecv := context.WithCancel(ctx)
	errout := &syncbuf.Buffer{}
	recv := make(chan int, 1)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freeport.One(t))
	go func() {
		recv <- run(recvCtx, []string{"recv", "-group", group, "-pub", filepath.Join(wrong, originPubFile), "-master", filepath.Join(dir, masterKeyFile),
			"-diagnose", "500ms", "-metrics", metricsAddr}, &syncbuf.Buffer{}, errout)
	}()
	wait.For(t, time.Minute, "the receiver to join", func() bool { return strings.Contains(errout.String(), "stamps") })
	edgeCtx, stopEdge := context.WithCancel(ctx)
	defer stopEdge()
	go run(edgeCtx, []string{"edge", "-keys", dir, "-group", group, "-period", "200ms", "-lead", "150ms", "-assume-synced", "1ms", "-log", "error"}, &syncbuf.Buffer{}, &syncbuf.Buffer{})
	wait.For(t, time.Minute, "the receiver to say why nothing is delivered", func() bool {
		return strings.Contains(errout.String(), "datagrams from 127.0.0.1 failed verification: wrong origin key")
	})
	_, m := httpGet("http://" + metricsAddr + "/metrics")
	for _, want := range []string{`role="recv"`, "go_goroutines", "embargo_recv_periods_delivered_total 0", `embargo_recv_drops_total{reason="forged"}`, `embargo_recv_skew_seconds{quantile="0.99"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("recv /metrics lacks %q:\n%s", want, m)
		}
	}
	stopRecv()
	if code := <-recv; code != 1 || !strings.Contains(errout.String(), "delivered no period") {
		t.Errorf("recv stopped having delivered nothing: exit %d:\n%s", code, errout.String())
	}
}
