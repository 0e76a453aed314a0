package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDemoDeliversEveryPeriodWithoutLoss(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "-periods", "2", "-period", "200ms", "-receivers", "3", "-loss", "0"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "summary: 6/6 deliveries") || !strings.Contains(out.String(), "never early") {
		t.Fatalf("summary missing:\n%s", out.String())
	}
}

// With every datagram lost nothing can be delivered, and the demo must say
// so with a failing exit rather than claim success.
func TestDemoFailsWhenNothingArrives(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "-periods", "1", "-period", "200ms", "-receivers", "2", "-loss", "0.999999"}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "0/2 receivers got the keys") || !strings.Contains(errb.String(), "2 deliveries missing") {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
}

func TestUsageAndErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 0, "commands:"},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"demo", "-h"}, 0, "usage: embargo demo"},
		{[]string{"demo", "-periods", "x"}, 2, "invalid value"},
		{[]string{"demo", "-loss", "2"}, 1, "0 ≤ loss < 1"},
		{[]string{"version"}, 0, "embargo "},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) {
			t.Errorf("%v: exit %d, output %q", c.args, code, out.String()+errb.String())
		}
	}
}
