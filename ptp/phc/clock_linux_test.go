package phc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	fbphc "github.com/facebook/time/phc"

	"github.com/embargo-live/embargo/ptp"
)

func TestOpenNoDevice(t *testing.T) {
	for _, dev := range []string{"/dev/ptp-embargo-missing", "embargo-noif0"} {
		if _, err := Open(dev); !errors.Is(err, ErrNoDevice) {
			t.Errorf("Open(%q): err = %v, want ErrNoDevice", dev, err)
		}
	}
	// Loopback exists but has no hardware clock.
	if _, err := Open("lo"); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Open(lo): err = %v, want ErrNoDevice", err)
	}
	// A readable file that is not a PHC fails at the probe read, not later.
	if _, err := Open("/dev/null"); err == nil {
		t.Error("Open(/dev/null) succeeded")
	}
}

func TestSamplesFromKernelStructs(t *testing.T) {
	ct := func(sec int64, nsec uint32) fbphc.PtpClockTime { return fbphc.PtpClockTime{Sec: sec, Nsec: nsec} }
	var ext fbphc.PTPSysOffsetExtended
	ext.Samples = 2
	ext.Ts[0] = [3]fbphc.PtpClockTime{ct(100, 999_999_000), ct(137, 500), ct(101, 2_000)}
	ext.Ts[1] = [3]fbphc.PtpClockTime{ct(101, 3_000), ct(138, 3_500), ct(101, 4_000)}
	ext.Ts[2] = [3]fbphc.PtpClockTime{ct(1, 0), ct(1, 0), ct(1, 0)} // beyond Samples: ignored
	got := samplesFromExtended(&ext)
	want := []sample{
		{Before: 100_999_999_000, PHC: 137_000_000_500, After: 101_000_002_000},
		{Before: 101_000_003_000, PHC: 138_000_003_500, After: 101_000_004_000},
	}
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sample %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	ext.Samples = 1000 // a corrupt count must not index past Ts
	if n := len(samplesFromExtended(&ext)); n != len(ext.Ts) {
		t.Errorf("corrupt sample count: %d samples, want %d", n, len(ext.Ts))
	}
	pre := fbphc.PTPSysOffsetPrecise{Device: ct(137, 10), Realtime: ct(100, 10)}
	if s := sampleFromPrecise(&pre); s.window() != 0 || s.PHC-s.Before != 37e9 {
		t.Errorf("precise sample %+v: want zero window, PHC 37 s ahead", s)
	}
}

// TestDevice runs the real read paths. It needs a PHC (/dev/ptpN), which
// VMs and containers usually lack.
func TestPHCDevice(t *testing.T) {
	devs, _ := filepath.Glob("/dev/ptp[0-9]*")
	if len(devs) == 0 {
		t.Skip("no /dev/ptp* on this host: PHC read paths (clock_gettime, PTP_SYS_OFFSET_*) not exercised")
	}
	for _, dev := range devs {
		t.Run(filepath.Base(dev), func(t *testing.T) {
			if f, err := os.Open(dev); err != nil {
				t.Skipf("cannot open %s (needs read access, usually root): %v", dev, err)
			} else {
				f.Close()
			}
			p, err := Open(dev, WithErrorBudget(time.Microsecond))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			r, err := p.Now()
			if err != nil {
				t.Fatal(err)
			}
			if r.State != ptp.StateSynchronized || r.Earliest > r.Latest || r.Uncertainty() < time.Microsecond {
				t.Errorf("reading %+v: want synchronized (default source), ordered, ≥ budget", r)
			}
			o, err := p.SysOffset()
			if err != nil {
				t.Fatal(err)
			}
			o2, err := p.SysOffset() // second call uses the cached method
			if err != nil || o2.Method != o.Method {
				t.Errorf("second SysOffset: %v, method %q then %q", err, o.Method, o2.Method)
			}
			t.Logf("%s: ±%v, %s; sys−PHC %v via %s (window %v), system error as TAI %v",
				dev, r.Uncertainty(), r.Reason, o.Offset, o.Method, o.Window, o.SystemError(ptp.DefaultTAIOffset))
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Now(); !errors.Is(err, ErrClosed) {
				t.Errorf("Now after Close: err = %v, want ErrClosed", err)
			}
		})
	}
}
