package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/internal/realtime"
)

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
	} {
		var out bytes.Buffer
		if code := run(context.Background(), c.args, &out, &out); code != 1 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, %q", c.args, code, out.String())
		}
	}
}
