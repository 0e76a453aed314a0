package keyserver_test

import (
	"testing"

	"github.com/embargo-live/embargo/internal/depcheck"
)

// TestDependencies: the origin links no device code — no receiver, device
// wiring or licence proxy — and the formats every role shares link no
// role at all.
func TestDependencies(t *testing.T) {
	depcheck.Forbid(t, "engine/keyserver", "./engine/receiver", "./engine/device", "./engine/licproxy", "./engine/poller")
	depcheck.Forbid(t, "engine/clearkey", "./engine/receiver", "./engine/keystore", "./engine/cpix", "./engine/keyserver", "./engine/device")
}
