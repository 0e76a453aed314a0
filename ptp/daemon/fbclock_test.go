package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/embargo-live/embargo/ptp"
)

// TestOpenFBClock: without the fbclock build there is a clear error; with
// it, a window that cannot be read (here: no fbclock PTP device, no
// daemon's shared memory) is an error at open, never a reading.
func TestOpenFBClock(t *testing.T) {
	c, err := OpenFBClock(filepath.Join(t.TempDir(), "none"))
	if err == nil {
		c.Close()
		t.Fatal("opened fbclock with no daemon")
	}
	if errors.Is(err, ErrNoFBClock) {
		if !errors.Is(err, ptp.ErrNotSupported) {
			t.Fatalf("%v does not wrap ErrNotSupported", err)
		}
		t.Logf("built without fbclock: %v", err)
		return
	}
	if _, serr := os.Stat("/dev/fbclock/ptp"); serr == nil {
		t.Logf("fbclock PTP device present; open failed on the missing shared memory: %v", err)
	} else {
		t.Logf("fbclock build: %v", err)
	}
}
