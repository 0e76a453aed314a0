package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/embargo-live/embargo/internal/realtime"
)

// rootState describes the namespace the test runs in: its links (index, name,
// flags) and IPv4 routes. Counters and timers are left out so the comparison
// is not flaky.
func rootState(t *testing.T) string {
	t.Helper()
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	var lines []string
	for _, line := range strings.Split(string(links), "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			lines = append(lines, strings.Join(f[:3], " "))
		}
	}
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	return strings.Join(lines, "\n") + "\n" + string(routes)
}

// buildOrSkip builds a lab the test must Close (it also closes it at the
// end, which is harmless after a Close), or skips with the reason.
// netnstest.New is the helper for every other package; it imports this one.
func buildOrSkip(t *testing.T, n int) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	l, err := Build(n, func(msg string) { t.Log(msg) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestCleanupLeavesNothing: Close deletes every namespace of a lab and its
// lock file, and the root namespace looks as it did before.
func TestCleanupLeavesNothing(t *testing.T) {
	realtime.Exclusive(t)
	before := rootState(t)
	lab := buildOrSkip(t, 3)
	id := lab.id
	names, err := labNamespaces(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(lab.Hosts()) + 1; len(names) != want {
		t.Fatalf("lab has namespaces %v, want %d", names, want)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), id) {
		t.Errorf("after cleanup, ip netns list still shows lab %s:\n%s", id, out)
	}
	if _, err := os.Stat(filepath.Join(lockDir, id)); !os.IsNotExist(err) {
		t.Errorf("lock file of lab %s: stat err = %v, want not exist", id, err)
	}
	if after := rootState(t); after != before {
		t.Errorf("root namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestDoLeavesCallerAlone(t *testing.T) {
	realtime.Exclusive(t)
	h := buildOrSkip(t, 1).Host(0)
	own := func() string {
		s, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var target os.FileInfo
	var inside string
	err := h.Do(func() (err error) {
		inside = own()
		target, err = os.Stat(filepath.Join(runDir, h.Name))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The bind mount's inode number is the namespace's.
	if want := fmt.Sprintf("net:[%d]", target.Sys().(*syscall.Stat_t).Ino); inside != want {
		t.Errorf("inside Do: namespace %s, want %s", inside, want)
	}
	before := own()
	for range 20 {
		h.Do(func() error { return nil })
		if now := own(); now != before {
			t.Fatalf("caller's namespace changed from %s to %s", before, now)
		}
	}
}

func TestSweepAbandoned(t *testing.T) {
	realtime.Exclusive(t)
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ip, _ := exec.LookPath("ip")
	tag, lock, err := claim()
	if err != nil {
		t.Fatal(err)
	}
	id := labID(tag)
	t.Cleanup(func() {
		deleteLab(ip, id)
		os.Remove(lock.Name())
	})
	if err := runIP(ip, "netns add "+id+"h0\n", "-batch", "-"); err != nil {
		t.Fatal(err)
	}
	// While the lock is held the lab is alive and must be left alone.
	sweep(ip)
	if names, _ := labNamespaces(id); len(names) != 1 {
		t.Fatalf("sweep touched a live lab: namespaces %v", names)
	}
	lock.Close() // as if the process had died
	msgs := sweep(ip)
	if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, id) }) {
		t.Errorf("sweep messages %q do not mention %s", msgs, id)
	}
	if names, _ := labNamespaces(id); len(names) != 0 {
		t.Errorf("after sweep: namespaces %v remain", names)
	}
	if _, err := os.Stat(lock.Name()); !os.IsNotExist(err) {
		t.Errorf("after sweep: lock file stat err = %v, want not exist", err)
	}
}
