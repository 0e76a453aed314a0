package realtime

import (
	"os"
	"os/exec"
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
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the child never got the machine after it was released")
	}
}
