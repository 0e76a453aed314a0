package receiver_test

import (
	"testing"

	"github.com/embargo-live/embargo/internal/depcheck"
)

// TestDependencies: the device library links none of the edge's or the
// host's machinery — no Linux sockets (engine/udp), no eBPF (bpf,
// cilium/ebpf), no PHC code (facebook/time, and logrus with it), no x/net.
// A device team links this package alone; everything it pulls in ships in
// their binary.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "engine/receiver", "github.com/sirupsen/logrus", "github.com/facebook/time", "github.com/cilium/ebpf", "golang.org/x/net", "./engine/udp", "./bpf", "./engine/edge", "./engine/keystore", "./engine/cpix")
}
