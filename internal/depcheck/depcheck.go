// Package depcheck lets a package's tests state which packages it must
// never link, so that the split by role (origin, edge, device) cannot
// erode by one convenient import. Only test files import it.
package depcheck

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Module is the module path the package paths below are relative to.
const Module = "github.com/embargo-live/embargo"

// Forbid fails t if package pkg (a path relative to Module, such as
// "engine/device") links any of forbidden, directly or not, for the
// platform the test runs on. It asks `go list -deps`, and skips the test
// only when the go tool is not installed.
func Forbid(t *testing.T, pkg string, forbidden ...string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("the go tool is not installed: cannot list dependencies")
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "list", "-deps", Module+"/"+pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, Module+"/"+pkg) {
		t.Fatalf("go list -deps %s did not list the package itself: %q", pkg, deps)
	}
	for _, f := range forbidden {
		if slices.Contains(deps, Module+"/"+f) {
			t.Errorf("%s links %s: %s", pkg, f, why(pkg, f))
		}
	}
}

// why is the fix, in one line.
func why(pkg, dep string) string {
	return "move the code that needs " + dep + " out of " + pkg + " to the role that runs it"
}
