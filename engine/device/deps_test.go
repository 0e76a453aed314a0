package device_test

import (
	"testing"

	"github.com/embargo-live/embargo/internal/depcheck"
)

// TestDependencies: a device links nothing of the origin's — not its
// keystore, CPIX, key server or rotation.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "engine/device", "./engine/keystore", "./engine/cpix", "./engine/keyserver", "./engine/origin", "./internal/pki", "./engine/edge", "./engine/unicast", "./engine/poller")
	depcheck.Forbid(t, "engine/session", "./engine/keystore", "./engine/cpix", "./engine/keyserver", "./engine/origin", "./internal/pki")
	depcheck.Forbid(t, "engine/licproxy", "./engine/keystore", "./engine/cpix", "./engine/keyserver", "./engine/origin")
}
