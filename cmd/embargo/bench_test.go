package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/realtime"
)

// TestMain lets `bench -peers` re-run this test binary as a subscriber
// process, as main does for the embargo binary.
func TestMain(m *testing.M) {
	bench.ServeSubscribers()
	os.Exit(m.Run())
}

// TestBenchPeers runs every release variant once at a small scale and
// checks the table's ratio rows, the JSON and the benchstat lines.
func TestBenchPeers(t *testing.T) {
	realtime.Exclusive(t)
	dir := t.TempDir()
	jsonPath, statPath := filepath.Join(dir, "runs.json"), filepath.Join(dir, "bench.txt")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "-peers", "-receivers", "20", "-procs", "2", "-runs", "1", "-peers-rt", "-json", jsonPath, "-benchstat", statPath}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	for _, row := range []string{"embargo-multicast ÷ nats", "embargo-multicast ÷ websocket", "embargo-unicast ÷ nats", "embargo-unicast ÷ websocket", "subscribers in separate processes on loopback (2 of them)", "priority: ", "load average at start: "} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("no %q in the table:\n%s", row, out.String())
		}
	}
	var runs []bench.Release
	data, err := os.ReadFile(jsonPath)
	if err == nil {
		err = json.Unmarshal(data, &runs)
	}
	if err != nil || len(runs) != len(bench.ReleaseVariants) {
		t.Fatalf("runs.json: %v %+v", err, runs)
	}
	for i, r := range runs {
		if r.Variant != bench.ReleaseVariants[i] || r.Delivered != 20 || r.Corrupt != 0 || r.Last <= 0 {
			t.Errorf("run %d: %+v", i, r)
		}
	}
	stat, _ := os.ReadFile(statPath)
	if lines := strings.Split(strings.TrimSpace(string(stat)), "\n"); len(lines) != len(bench.ReleaseVariants) || !strings.HasPrefix(lines[slices.Index(bench.ReleaseVariants, bench.PeerNATS)], "BenchmarkRelease/variant=nats/subscribers=20 1 ") {
		t.Fatalf("benchstat text:\n%s", stat)
	}
}

// TestBench runs the smallest comparison and checks the table, the ratio
// line, the JSON and the benchstat lines.
func TestBench(t *testing.T) {
	realtime.Exclusive(t)
	dir := t.TempDir()
	jsonPath, statPath := filepath.Join(dir, "runs.json"), filepath.Join(dir, "bench.txt")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "-mode", "mixed", "-receivers", "6", "-edges", "2", "-offsets", "0,2ms",
		"-period", "300ms", "-periods", "2", "-runs", "1", "-compare", "-json", jsonPath, "-benchstat", statPath}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "engine/baseline, medians of runs") || strings.Count(out.String(), "1.0000") != 2 {
		t.Errorf("table:\n%s", out.String())
	}
	var runs []bench.Measurement
	data, err := os.ReadFile(jsonPath)
	if err == nil {
		err = json.Unmarshal(data, &runs)
	}
	if err != nil || len(runs) != 2 || runs[0].Variant != "baseline" || runs[1].Variant != "engine" || runs[1].Delivered != 1 || runs[1].Early != 0 || runs[1].FanOutP50 <= 0 {
		t.Fatalf("runs.json: %v %+v", err, runs)
	}
	stat, _ := os.ReadFile(statPath)
	if lines := strings.Split(strings.TrimSpace(string(stat)), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "BenchmarkEmbargo/mode=mixed/receivers=6/edges=2/sender=engine 1 ") {
		t.Fatalf("benchstat text:\n%s", stat)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-mode", "carrier-pigeon"}, "want multicast, unicast or mixed"},
		{[]string{"bench", "-mode", "multicast", "-compare"}, "needs unicast receivers"},
		{[]string{"bench", "-edges", "2", "-offsets", "1ms"}, "1 values for 2 edges"},
		{[]string{"bench", "-peers", "-variants", "nats,carrier-pigeon"}, `-variants: "carrier-pigeon": want some of embargo-multicast,`},
		{[]string{"bench", "-clock-daemons", "-edges", "3"}, "-clock-daemons runs 2 edges on their own clocks"},
		{[]string{"bench", "-peers", "-receivers", "50001"}, "need 1 ≤ receivers ≤ 50000"},
		{[]string{"bench", "-peers", "-rt-priority", "100"}, "-rt-priority 100: want 1…99"},
		{[]string{"bench", "-copies", "7"}, "-copies is for -peers runs"},
		{[]string{"bench", "-peers", "-copies", "0"}, "-copies 0: want 1…16"},
		{[]string{"bench", "-receivers", "20001"}, "need 1 ≤ receivers ≤ 20000"},
	} {
		var out bytes.Buffer
		if code := run(context.Background(), c.args, &out, &out); code != 1 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, %q", c.args, code, out.String())
		}
	}
}

// TestBenchClockDaemonsMissing: without the daemons (none on PATH here),
// -clock-daemons says which is missing and how to get it, on one line,
// and exits non-zero.
func TestBenchClockDaemonsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "-clock-daemons", "-receivers", "2", "-runs", "1"}, &out, &errb)
	msg := strings.TrimSpace(errb.String()[strings.LastIndex(strings.TrimSpace(errb.String()), "\n")+1:])
	if code != 1 || !strings.Contains(msg, "-clock-daemons: chronyd: time daemon not installed (apt-get install chrony linuxptp)") {
		t.Fatalf("exit %d, last line %q; stdout %q", code, msg, out.String())
	}
}

// TestBenchClockDaemons runs two edges on real daemons' bounds (root,
// chrony and linuxptp; skipped with the reason otherwise) and checks the
// run reports each edge's stated bound and the skew across the edges
// against their sum.
func TestBenchClockDaemons(t *testing.T) {
	realtime.Exclusive(t)
	for _, b := range []string{"chronyd", "ptp4l"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install chrony linuxptp; .ci/run does as root)", b)
		}
	}
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	jsonPath := filepath.Join(t.TempDir(), "runs.json")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"bench", "-clock-daemons", "-mode", "multicast", "-receivers", "4",
		"-period", "300ms", "-periods", "4", "-runs", "1", "-json", jsonPath}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "send skew across the edges") {
		t.Errorf("no skew line:\n%s", out.String())
	}
	var runs []bench.Measurement
	data, err := os.ReadFile(jsonPath)
	if err == nil {
		err = json.Unmarshal(data, &runs)
	}
	if err != nil || len(runs) != 1 || runs[0].Early != 0 || runs[0].Delivered != 1 || runs[0].EdgeSkew == nil {
		t.Fatalf("runs.json: %v\n%s", err, data)
	}
	es := runs[0].EdgeSkew
	if len(es.Edges) != 2 || es.Periods != 4 || es.SumMin <= 0 {
		t.Fatalf("edge skew: %+v", es)
	}
	for i, want := range []string{"chrony ", "ptp4l "} {
		if e := es.Edges[i]; !strings.HasPrefix(e.Clock, want) || e.BoundP50 <= 0 {
			t.Errorf("edge %d: %+v, want a bound from %s", i, e, want)
		}
	}
}
