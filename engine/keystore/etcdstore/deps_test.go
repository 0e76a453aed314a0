package etcdstore_test

import (
	"testing"

	"github.com/embargo-live/embargo/internal/depcheck"
)

// TestDependencies: the etcd client is the origin's alone; edges and
// devices never link it.
func TestDependencies(t *testing.T) {
	for _, pkg := range []string{"engine/receiver", "engine/device", "engine/poller", "engine/edge", "engine/session"} {
		depcheck.Forbid(t, pkg, "go.etcd.io", "./engine/keystore")
	}
}
