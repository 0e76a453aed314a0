package netnstest

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/realtime"
)

// fatalTB records a Fatal call and ends the goroutine as the real one would.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// TestNewRejectsSize: a size out of range fails the test, naming the size,
// whether or not namespaces can be built here.
func TestNewRejectsSize(t *testing.T) {
	for _, n := range []int{-1, 0, 201} {
		f := &fatalTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			New(f, n)
		}()
		<-done
		if !strings.Contains(f.msg, fmt.Sprint(n)) {
			t.Errorf("New(%d): fatal message %q, want one naming the size", n, f.msg)
		}
	}
}

// TestNewCleansUp: the lab New builds is gone once the test that built it
// has ended.
func TestNewCleansUp(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	realtime.Exclusive(t)
	var name string
	t.Run("lab", func(t *testing.T) { name = New(t, 1).Host(0).Name })
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if name == "" || strings.Contains(string(out), name) {
		t.Errorf("host %q still listed after its test ended:\n%s", name, out)
	}
}
