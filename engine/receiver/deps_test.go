package receiver_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: the device library links none of the edge's or the
// host's machinery — no Linux sockets (engine/udp), no eBPF (bpf,
// cilium/ebpf), no PHC code (facebook/time, and logrus with it), no x/net.
// A device team links this package alone; everything it pulls in ships in
// their binary. .ci/run checks the same with go list.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go binary to list dependencies with")
	}
	// One line per package: its path, then what it imports.
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}",
		"github.com/embargo-live/embargo/engine/receiver").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	importers := map[string][]string{}
	var pkgs []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkgs = append(pkgs, f[0])
		for _, imp := range f[1:] {
			importers[imp] = append(importers[imp], f[0])
		}
	}
	var bad []string
	for _, pkg := range pkgs {
		if forbidden(pkg) {
			bad = append(bad, pkg+" (imported by "+strings.Join(importers[pkg], ", ")+")")
		}
	}
	if len(bad) > 0 {
		t.Fatalf("engine/receiver links %d packages a device library must not; cut the import that brings each in:\n\t%s",
			len(bad), strings.Join(bad, "\n\t"))
	}
}

// forbidden reports whether a device library must not link pkg.
func forbidden(pkg string) bool {
	for _, s := range []string{"sirupsen/logrus", "facebook/time", "cilium/ebpf", "golang.org/x/net"} {
		if strings.Contains(pkg, s) {
			return true
		}
	}
	for _, p := range []string{"github.com/embargo-live/embargo/engine/udp", "github.com/embargo-live/embargo/bpf"} {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

func TestForbidden(t *testing.T) {
	for pkg, want := range map[string]bool{
		"github.com/embargo-live/embargo/bpf":                  true,
		"github.com/embargo-live/embargo/engine/receiver/skew": true,
		"github.com/embargo-live/embargo/bpfish":               false,
		"github.com/embargo-live/embargo/engine/udp":           true,
		"github.com/embargo-live/embargo/engine/datagram":      false,
		"github.com/facebook/time/phc":                         true,
		"github.com/sirupsen/logrus":                           true,
		"github.com/cilium/ebpf/asm":                           true,
		"golang.org/x/net/ipv4":                                true,
		"golang.org/x/sys/unix":                                false,
		"github.com/embargo-live/embargo/ptp":                  false,
	} {
		if got := forbidden(pkg); got != want {
			t.Errorf("forbidden(%q) = %v, want %v", pkg, got, want)
		}
	}
}
