package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// TestNotifySystemd runs the notifier against a fake NOTIFY_SOCKET: READY=1
// comes only once the role is ready, a loss of readiness is a STATUS with
// its reason (not a second READY), the watchdog is petted meanwhile, and
// STOPPING=1 ends it.
func TestNotifySystemd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	defer func(old time.Duration) { notifyInterval = old }(notifyInterval)
	notifyInterval = 10 * time.Millisecond

	var mu sync.Mutex
	notReady := errors.New("clock not synchronized")
	setReady := func(err error) { mu.Lock(); notReady = err; mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var g errgroup.Group
	notifySystemd(ctx, &g, slog.New(slog.NewTextHandler(io.Discard, nil)), func() error {
		mu.Lock()
		defer mu.Unlock()
		return notReady
	})

	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// next returns the next message other than a watchdog pet, counting
	// the pets; it fails the test if none comes.
	pets := 0
	next := func(ok func() bool) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case msg := <-msgs:
				if msg != "WATCHDOG=1" {
					return msg
				}
				pets++
				if ok != nil && ok() {
					return ""
				}
			case <-timeout:
				t.Fatal("no notification")
			}
		}
	}
	if got := next(nil); got != "STATUS=not ready: clock not synchronized" {
		t.Fatalf("first message %q", got)
	}
	setReady(nil)
	if got := next(nil); got != "READY=1\nSTATUS=ready" {
		t.Fatalf("on readiness: %q", got)
	}
	setReady(errors.New("bundles cover 0 of 3 periods ahead"))
	if got := next(nil); got != "STATUS=not ready: bundles cover 0 of 3 periods ahead" {
		t.Fatalf("on losing readiness: %q", got)
	}
	before := pets
	if got := next(func() bool { return pets >= before+2 }); got != "" {
		t.Fatalf("unexpected %q while waiting for watchdog pets", got)
	}
	cancel()
	if got := next(nil); got != "STOPPING=1" {
		t.Fatalf("on stop: %q", got)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}
