package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestingLinked: the binary operators run does not link package
// testing (nor its flags), though `embargo demo -netns` links the lab code
// the tests use.
func TestNoTestingLinked(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the binary's packages: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/embargo-live/embargo/cmd/embargo").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	for _, p := range deps {
		if p == "testing" || strings.HasPrefix(p, "testing/") || strings.HasSuffix(p, "test") && strings.HasPrefix(p, "github.com/embargo-live/") {
			t.Errorf("embargo links %s", p)
		}
	}
}
