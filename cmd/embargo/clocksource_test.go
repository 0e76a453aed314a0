package main

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/embargo-live/embargo/ptp/daemon"
)

func TestParseClockSource(t *testing.T) {
	for _, c := range []struct {
		spec, phc string
		want      clockSource
	}{
		{"", "", clockSource{kind: "system"}},
		{"system", "", clockSource{kind: "system"}},
		{"system", "/dev/ptp1", clockSource{kind: "phc", path: "/dev/ptp1"}},
		{"phc:/dev/ptp0", "", clockSource{kind: "phc", path: "/dev/ptp0"}},
		{"chrony", "", clockSource{kind: "chrony"}},
		{"chrony:/run/c.sock", "", clockSource{kind: "chrony", path: "/run/c.sock"}},
		{"ptp4l:/var/run/ptp4l", "", clockSource{kind: "ptp4l", path: "/var/run/ptp4l"}},
		{"ptp4l:/s,phc=/dev/ptp0,free-running", "", clockSource{kind: "ptp4l", path: "/s", phc: "/dev/ptp0",
			ptp4l: daemon.PTP4LOptions{PHC: true, FreeRunning: true}}},
		{"fbclock", "", clockSource{kind: "fbclock"}},
	} {
		got, err := parseClockSource(c.spec, c.phc)
		if err != nil || got != c.want {
			t.Errorf("parse(%q, -phc %q) = %+v, %v; want %+v", c.spec, c.phc, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"gps", ""}, {"phc", ""}, {"system:x", ""}, {"ptp4l:/s,phc=", ""},
		{"ptp4l:/s,fast", ""}, {"chrony", "/dev/ptp0"}} {
		if got, err := parseClockSource(bad[0], bad[1]); err == nil {
			t.Errorf("parse(%q, -phc %q) = %+v, want an error", bad[0], bad[1], got)
		}
	}
}

// TestOpenClockSource: a daemon that does not answer fails at start-up,
// naming it, rather than at release time; -assume-synced does not mix
// with a daemon's bound.
func TestOpenClockSource(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "chronyd.sock")
	cs, err := parseClockSource("chrony:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cs.open(); !errors.Is(err, daemon.ErrNoAnswer) {
		t.Fatalf("chrony with no daemon: %v, want ErrNoAnswer", err)
	}
	cs.assume = time.Millisecond
	if _, _, err := cs.open(); err == nil || errors.Is(err, daemon.ErrNoAnswer) {
		t.Fatalf("chrony with -assume-synced: %v, want a refusal", err)
	}
}

// TestClockSourceName: every release report names its source as the
// operator chose it.
func TestClockSourceName(t *testing.T) {
	for spec, want := range map[string]string{
		"":                "system",
		"phc:/dev/ptp0":   "phc /dev/ptp0",
		"fbclock":         "fbclock default",
		"fbclock:/dev/fb": "fbclock /dev/fb",
		"chrony:/run/c":   "chrony /run/c",
	} {
		cs, err := parseClockSource(spec, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.name(nil); got != want {
			t.Errorf("-clock %q: named %q, want %q", spec, got, want)
		}
	}
	cs := clockSource{kind: "system", assume: time.Millisecond}
	if got := cs.name(nil); got != "system, assumed synchronized ±1ms" {
		t.Errorf("-assume-synced 1ms: named %q", got)
	}
}
