package main

import (
	"testing"

	"github.com/embargo-live/embargo/internal/depcheck"
)

// TestDependencies: the binary operators run does not link package testing
// (nor its flags) or any test double, though `embargo demo -netns` links
// the lab code the tests use.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "cmd/embargo", "testing", "./internal/netns/netnstest", "./internal/realtime",
		"./internal/memhttp", "./internal/depcheck", "./engine/edge/edgetest", "./engine/datagram/datagramtest",
		"./engine/subscriber/subscribertest", "./internal/etcdtest", "./engine/keystore/keystoretest")
}
