package realtime

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestChild is what the child process of TestOtherProcessWaits runs: it
// takes the machine and reports when it got it.
func TestChild(t *testing.T) {
	if os.Getenv("REALTIME_CHILD") != "1" {
		t.Skip("run only as TestOtherProcessWaits's child")
	}
	Exclusive(t)
	t.Logf("got it at %d", time.Now().UnixNano())
}

// TestOtherProcessWaits: while this test holds the machine, another test
// binary asking for it blocks, and it gets it once this test lets go.
func TestOtherProcessWaits(t *testing.T) {
	if testing.Short() {
		t.Skip(SkipReason) // it waits on real time and another process
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^TestChild$", "-test.v")
	cmd.Env = append(os.Environ(), "REALTIME_CHILD=1")
	done := make(chan error, 1)
	t.Run("hold", func(t *testing.T) {
		Exclusive(t)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("the child finished while this test held the machine (%v)", err)
		case <-time.After(500 * time.Millisecond):
		}
	})
	// The child competes for the machine with every other real-time test
	// `go test ./...` runs (a fault-suite scenario can hold it for
	// minutes), so it may wait as long as this test may.
	var giveUp <-chan time.Time
	if d, ok := t.Deadline(); ok {
		giveUp = time.After(time.Until(d) - 5*time.Second)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-giveUp:
		cmd.Process.Kill()
		t.Fatal("the child never got the machine after it was released")
	}
}

// TestShortChild is what TestShortSkips runs under -short: Exclusive must
// skip it before it gets any further.
func TestShortChild(t *testing.T) {
	if os.Getenv("REALTIME_CHILD") != "short" {
		t.Skip("run only as TestShortSkips's child")
	}
	Exclusive(t)
	t.Error("Exclusive returned under -short")
}

// TestShortSkips: under -short, Exclusive skips the test with the reason,
// and does not take the machine (a child skips at once while this test
// holds it). Without -short the same child would fail, so it must skip.
func TestShortSkips(t *testing.T) {
	if testing.Short() {
		t.Skip(SkipReason) // it takes the machine to prove the child did not
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	Exclusive(t)
	// Were Exclusive to wait for the machine, the child would time out.
	cmd := exec.Command(exe, "-test.run", "^TestShortChild$", "-test.v", "-test.short", "-test.timeout", "20s")
	cmd.Env = append(os.Environ(), "REALTIME_CHILD=short")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child under -short: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- SKIP: TestShortChild") || !strings.Contains(string(out), SkipReason) {
		t.Fatalf("child under -short did not skip with %q:\n%s", SkipReason, out)
	}
}
