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
// platform the test runs on. A forbidden entry names a package and
// everything below it: "./engine/udp" is relative to Module and also
// forbids "./engine/udp/..."; anything else is a full import path
// ("github.com/facebook/time", "testing"). It asks `go list -deps`, and
// skips the test only when the go tool is not installed. Each failure
// names the packages that import the forbidden one, which is where the
// fix goes.
func Forbid(t *testing.T, pkg string, forbidden ...string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("the go tool is not installed: cannot list dependencies")
	}
	if err != nil {
		t.Fatal(err)
	}
	// One line per package: its path, then what it imports.
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", Module+"/"+pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var deps []string
	importers := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		deps = append(deps, f[0])
		for _, imp := range f[1:] {
			importers[imp] = append(importers[imp], f[0])
		}
	}
	if !slices.Contains(deps, Module+"/"+pkg) {
		t.Fatalf("go list -deps %s did not list the package itself: %q", pkg, deps)
	}
	for _, f := range forbidden {
		for _, d := range deps {
			if Matches(d, f) {
				t.Errorf("%s links %s (imported by %s): move the code that needs it out of %s to the role that runs it",
					pkg, d, strings.Join(importers[d], ", "), pkg)
			}
		}
	}
}

// Matches reports whether the import path dep is the package forbidden
// names or one below it (see Forbid for how forbidden is written).
func Matches(dep, forbidden string) bool {
	if rel, ok := strings.CutPrefix(forbidden, "./"); ok {
		forbidden = Module + "/" + rel
	}
	return dep == forbidden || strings.HasPrefix(dep, forbidden+"/")
}
