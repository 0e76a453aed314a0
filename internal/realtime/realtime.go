// Package realtime serializes the tests that measure or depend on wall-clock
// time across every test binary `go test ./...` runs at once.
//
// `go test ./...` runs packages side by side. The engine's logic tests run
// in virtual time (testing/synctest) and do not care, but the few real-time
// end-to-end tests — real sockets, real clocks, network namespaces, the
// fault suite that saturates both cores — must not run beside each other:
// one of them starving another is exactly the chance failure CI must never
// have. A test that needs the machine calls Exclusive first; it blocks until
// no other such test, in this process or another, holds the machine, and
// releases it when the test ends. Under -short, Exclusive skips the test
// instead, so `go test -short ./...` runs the unit tests alone.
//
// Only test files import this package, so no binary links package testing.
package realtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// lockName is the file every test binary locks; the same for every user,
// so that root's and another user's runs do not overlap either.
const lockName = "embargo-realtime-tests.lock"

var inProcess sync.Mutex

// SkipReason is why Exclusive skips a test under -short.
const SkipReason = "real-time test: run without -short"

// Exclusive blocks until t holds the machine for real-time tests, logs how
// long it waited if it waited, and releases the machine when t ends. Under
// -short it skips t with SkipReason instead. It must not be called from a
// subtest of a test that holds it.
func Exclusive(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip(SkipReason)
	}
	start := time.Now()
	inProcess.Lock()
	f, err := lockFile()
	if err != nil {
		inProcess.Unlock()
		t.Fatalf("realtime: %v", err)
	}
	if waited := time.Since(start); waited > 100*time.Millisecond {
		t.Logf("realtime: waited %v for other real-time tests to finish", waited.Round(time.Millisecond))
	}
	t.Cleanup(func() {
		f.Close() // drops the lock
		inProcess.Unlock()
	})
}

func lockFile() (*os.File, error) {
	path := filepath.Join(os.TempDir(), lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		// Another user's file in a sticky /tmp: without write permission,
		// or where fs.protected_regular refuses O_CREAT on it even to root,
		// a read descriptor locks just as well.
		var rerr error
		if f, rerr = os.Open(path); rerr != nil {
			return nil, fmt.Errorf("lock %s: %w", path, errors.Join(err, rerr))
		}
	} else {
		// Let another user's run open it for writing too.
		_ = f.Chmod(0o666)
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
