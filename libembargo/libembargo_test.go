package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/realtime"
)

func build(t *testing.T, dir string, args ...string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH to build the C library with: %v", err)
	}
	cmd := exec.Command(goTool, append([]string{"build"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
}

// TestCExample builds the library as a C archive and a shared library,
// builds examples/c/receive.c against the archive, and runs it beside
// `embargo recv` against a live edge on loopback: the C program must print
// every period with the same keys the Go receiver got, never before its
// releaseAt.
func TestCExample(t *testing.T) {
	realtime.Exclusive(t)
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("no C compiler (cc) here: %v", err)
	}
	root, _ := filepath.Abs("..")
	tmp := t.TempDir()
	lib, shared, bin := filepath.Join(tmp, "libembargo.a"), filepath.Join(tmp, "libembargo.so"), filepath.Join(tmp, "embargo")
	build(t, root, "-buildmode=c-archive", "-o", lib, "./libembargo")
	build(t, root, "-buildmode=c-shared", "-o", shared, "./libembargo")
	build(t, root, "-o", bin, "./cmd/embargo")
	f, err := elf.Open(shared)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.DynamicSymbols()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, s := range syms {
		exported[s.Name] = true
	}
	for _, name := range []string{"embargo_open", "embargo_poll", "embargo_read_stats", "embargo_error", "embargo_close", "embargo_abi_version"} {
		if !exported[name] {
			t.Errorf("libembargo.so does not export %s", name)
		}
	}
	example := filepath.Join(tmp, "receive")
	if out, err := exec.Command(cc, "-Wall", "-Wextra", "-Werror", "-I", filepath.Join(root, "libembargo"),
		filepath.Join(root, "examples", "c", "receive.c"), lib, "-lpthread", "-o", example).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}

	keys := filepath.Join(tmp, "keys")
	if out, err := exec.Command(bin, "keys", "-dir", keys).CombinedOutput(); err != nil {
		t.Fatalf("keys: %v\n%s", err, out)
	}
	group := fmt.Sprintf("239.255.77.93:%d%%lo", freeport.One(t))
	pub, master := filepath.Join(keys, "origin.pub"), filepath.Join(keys, "master.key")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const periods = 3
	var recvOut, cOut, cErr bytes.Buffer
	recv := exec.CommandContext(ctx, bin, "recv", "-pub", pub, "-master", master, "-group", group, "-periods", fmt.Sprint(periods), "-json", "-show-keys")
	recv.Stdout = &recvOut
	crecv := exec.CommandContext(ctx, example, "-pub", pub, "-master", master, "-group", group, "-n", fmt.Sprint(periods))
	crecv.Stdout, crecv.Stderr = &cOut, &cErr
	edge := exec.CommandContext(ctx, bin, "edge", "-keys", keys, "-group", group, "-assume-synced", "1ms",
		"-period", "400ms", "-lead", "800ms", "-present", "400ms", "-log", "warn")
	for _, c := range []*exec.Cmd{recv, crecv} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Each receiver prints the first periods it gets; one that joins late
	// (a slow start) prints later ones, so the sets may differ by a period,
	// and the keys are compared where they overlap.
	if err := edge.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { edge.Process.Kill(); edge.Wait() }()
	if err := crecv.Wait(); err != nil {
		t.Fatalf("C example: %v\n%s%s", err, cOut.String(), cErr.String())
	}
	if err := recv.Wait(); err != nil {
		t.Fatalf("embargo recv: %v\n%s", err, recvOut.String())
	}

	want := map[string]string{} // period → "kid=key,..." from the Go receiver
	for _, line := range strings.Split(strings.TrimSpace(recvOut.String()), "\n") {
		var ev struct {
			Period uint64   `json:"period"`
			KIDs   []string `json:"kids"`
			Keys   []string `json:"keys"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("recv line %q: %v", line, err)
		}
		var pairs []string
		for i := range ev.KIDs {
			pairs = append(pairs, ev.KIDs[i]+"="+ev.Keys[i])
		}
		want[fmt.Sprint(ev.Period)] = strings.Join(pairs, ",")
	}
	matched := 0
	sc := bufio.NewScanner(&cOut)
	for sc.Scan() {
		var stream, kernel int
		var period string
		var releaseAt, arrival int64
		var from, keys string
		if _, err := fmt.Sscanf(sc.Text(), "stream=%d period=%s release_at=%d arrival=%d kernel=%d from=%s keys=%s", &stream, &period, &releaseAt, &arrival, &kernel, &from, &keys); err != nil {
			t.Fatalf("C line %q: %v", sc.Text(), err)
		}
		if arrival < releaseAt {
			t.Errorf("period %s arrived %d ns before its releaseAt", period, releaseAt-arrival)
		}
		if w, ok := want[period]; ok {
			if keys != w {
				t.Errorf("period %s: C printed %s, Go receiver %s", period, keys, w)
			}
			matched++
		}
	}
	if matched == 0 || !strings.Contains(cErr.String(), fmt.Sprintf("%d periods delivered", periods)) {
		t.Fatalf("C example matched %d periods of the Go receiver's:\nC: %s%s\nGo: %s", matched, cOut.String(), cErr.String(), recvOut.String())
	}
	if info, err := os.Stat(lib); err == nil {
		t.Logf("libembargo.a %d bytes (%s/%s)", info.Size(), runtime.GOOS, runtime.GOARCH)
	}
}
