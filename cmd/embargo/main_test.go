package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/realtime"
)

// TestDemoDeliversEveryPeriod runs a small event (two edges, receivers on
// multicast and unicast, some loss) and checks the summary and the report.
func TestDemoDeliversEveryPeriod(t *testing.T) {
	realtime.Exclusive(t)
	var out, errb bytes.Buffer
	dir := filepath.Join(t.TempDir(), "report")
	code := run(context.Background(), []string{"demo", "-periods", "2", "-period", "300ms", "-receivers", "6", "-loss", "0.02", "-report", dir}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"summary: 12/12 deliveries, 0 early, 0 wrong keys", "3 on multicast, 3 by unicast to every edge) on loopback", "6/6 receivers", "never early"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r bench.Report
	if err := json.Unmarshal(data, &r); err != nil || len(r.Periods) != 2 || r.Summary.Deliveries != 12 || r.Receivers != 6 || len(r.Histogram) == 0 {
		t.Fatalf("report.json: %v\n%s", err, data)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "skew.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{ XMLName xml.Name })); err != nil || !bytes.Contains(svg, []byte("200 ms target")) {
		t.Fatalf("skew.svg: %v", err)
	}
}

// TestDemoInterrupted: stopped early (Ctrl-C), the demo still summarizes
// and reports the periods it finished, and says it was interrupted.
func TestDemoInterrupted(t *testing.T) {
	realtime.Exclusive(t)
	var out, errb bytes.Buffer
	dir := filepath.Join(t.TempDir(), "report")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	code := run(ctx, []string{"demo", "-periods", "20", "-period", "300ms", "-receivers", "4", "-report", dir}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "interrupted after") || !strings.Contains(errb.String(), "interrupted") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
	var r bench.Report
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err != nil || len(r.Periods) == 0 || len(r.Periods) >= 20 || r.Summary.Expected != 4*len(r.Periods) {
		t.Fatalf("report after an interruption: %v, %d periods, %+v", err, len(r.Periods), r.Summary)
	}
}

// TestDemoNetns: as root the demo runs across network namespaces; an
// ordinary user gets a clear refusal, not a half-built lab.
func TestDemoNetns(t *testing.T) {
	realtime.Exclusive(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "-netns", "-periods", "2", "-period", "300ms", "-receivers", "6", "-report", ""}, &out, &errb)
	if err := netns.Available(); err != nil {
		if code != 1 || !strings.Contains(errb.String(), "-netns") {
			t.Fatalf("without namespaces: exit %d: %s", code, errb.String())
		}
		return
	}
	if code != 0 || !strings.Contains(out.String(), "network namespaces on a bridge") || !strings.Contains(out.String(), "summary: 12/12 deliveries, 0 early") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
}

// With every datagram lost nothing can be delivered, and the demo must say
// so with a failing exit rather than claim success.
func TestDemoFailsWhenNothingArrives(t *testing.T) {
	realtime.Exclusive(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "-periods", "1", "-period", "200ms", "-receivers", "2", "-loss", "0.999999", "-report", ""}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "0/2 receivers") || !strings.Contains(errb.String(), "2 deliveries missing") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
}

func TestUsageAndErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "commands:"},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"demo", "-h"}, 0, "usage: embargo demo"},
		{[]string{"demo", "-periods", "x"}, 2, "invalid value"},
		{[]string{"demo", "-loss", "2"}, 1, "0 ≤ loss < 1"},
		{[]string{"version"}, 0, "embargo "},
		{[]string{"-version"}, 0, "embargo "},
		{[]string{"--version"}, 0, "embargo "},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("%v: exit %d, output %q", c.args, code, out.String()+errb.String())
		}
	}
}

// TestFlagErrorIsOneLine: a mistake on the command line is one line that
// names it, then a pointer to -h — not the whole usage, which would scroll
// the mistake out of sight.
func TestFlagErrorIsOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"edge", "-group", "bad"},
		{"recv", "-nosuchflag"},
		{"origin", "extra"},
		{"demo", "-periods", "x"},
		{"edge", "-origin", "127.0.0.1:18443"},
		{"recv", "-session", "http://127.0.0.1:8443/v1/session"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb)
		lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
		if code != 2 || out.Len() != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "embargo "+args[0]+": ") || lines[1] != "Run 'embargo "+args[0]+" -h' for its flags." {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}

// TestNamedMistakes: what the issue found unnamed or misleading now says
// what is wrong and how to fix it.
func TestNamedMistakes(t *testing.T) {
	keys := t.TempDir()
	if code := run(context.Background(), []string{"keys", "-dir", keys, "-force"}, io.Discard, io.Discard); code != 0 {
		t.Fatal("keys failed")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"edge", "-origin", "127.0.0.1:18443"}, `-origin "127.0.0.1:18443": want the origin's https URL, e.g. https://127.0.0.1:18443`},
		{[]string{"edge", "-keys", keys, "-group", "239.255.77.71:7171%nosuchif"}, `interface "nosuchif"`},
		{[]string{"edge", "-keys", t.TempDir()}, `origin.key: no such file or directory: make an event's keys with 'embargo keys -dir`},
	} {
		var out, errb bytes.Buffer
		run(context.Background(), c.args, &out, &errb)
		if !strings.Contains(errb.String(), c.want) || strings.Contains(errb.String(), "<nil>") {
			t.Errorf("%v: %q, want %q", c.args, errb.String(), c.want)
		}
	}
}

// TestVersionLine: a release build prints the version and commit the
// release script stamped; any build names its toolchain and platform.
func TestVersionLine(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef0123"
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "embargo v1.2.3 (commit 0123456789ab") || !strings.Contains(out.String(), runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("exit %d: %q", code, out.String())
	}
}

func TestCount(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{{0, "0 periods"}, {1, "1 period"}, {2, "2 periods"}} {
		if got := count(c.n, "period"); got != c.want {
			t.Errorf("count(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}
