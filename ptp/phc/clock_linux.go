package phc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	fbphc "github.com/facebook/time/phc"
	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/ptp"
)

// Offset methods, probed once per PHC: PRECISE needs driver cross-timestamp
// support (few NICs have it), EXTENDED works on every PHC.
const (
	methodUnprobed int32 = iota
	methodPrecise
	methodExtended
)

// Clock is a PTP hardware clock, assumed to run on TAI as ptp4l keeps it. It
// is read directly through its dynamic POSIX clock id and implements
// ptp.Clock. It is safe for concurrent use.
type Clock struct {
	cfg  config
	path string

	// mu orders reads against Close: once the file is closed its fd number
	// can be reused, and the clock id derived from it would then name
	// another file.
	mu      sync.RWMutex
	f       *os.File
	dev     *fbphc.Device
	clockID int32
	method  atomic.Int32
}

// Open opens device, a PHC path such as /dev/ptp0 or a network interface
// name whose PHC is looked up through ethtool. A missing device or an
// interface without a PHC returns an error wrapping ErrNoDevice. The clock is
// read once so that a file that is not a PHC fails here.
func Open(device string, opts ...Option) (*Clock, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("phc %s: %w", device, err)
	}
	path := device
	if !strings.HasPrefix(device, "/") {
		if path, err = fbphc.IfaceToPHCDevice(device); err != nil {
			return nil, fmt.Errorf("phc %s: %w: %w", device, ErrNoDevice, err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("phc %s: %w: %w", device, ErrNoDevice, err)
		}
		return nil, fmt.Errorf("phc %s: %w", device, err)
	}
	dev := fbphc.FromFile(f)
	p := &Clock{cfg: cfg, path: path, f: f, dev: dev, clockID: dev.ClockID()}
	if _, err := p.Now(); err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

// Path is the device path, after any interface lookup.
func (p *Clock) Path() string { return p.path }

// Close releases the device; later reads return ErrClosed.
func (p *Clock) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	err := p.f.Close()
	p.f, p.dev = nil, nil
	return err
}

// Now reads the PHC with clock_gettime, bracketed by two monotonic reads
// whose distance widens the bound (see readingOf). It costs one syscall.
func (p *Clock) Now() (ptp.Reading, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.f == nil {
		return ptp.Reading{Reason: "closed"}, fmt.Errorf("phc %s: %w", p.path, ErrClosed)
	}
	var ts unix.Timespec
	before := time.Now()
	err := unix.ClockGettime(p.clockID, &ts)
	after := time.Now()
	if err != nil {
		return ptp.Reading{Reason: err.Error()}, fmt.Errorf("phc %s: clock_gettime: %w", p.path, err)
	}
	b := before.UnixNano()
	s := sample{Before: b, PHC: ts.Nano(), After: b + int64(after.Sub(before))}
	last, synced := p.cfg.sync.LastSync()
	return readingOf(s, last, synced, after, &p.cfg), nil
}

// SysOffset measures CLOCK_REALTIME against the PHC with
// PTP_SYS_OFFSET_PRECISE where the driver supports it (probed on first use
// and remembered) and PTP_SYS_OFFSET_EXTENDED otherwise, taking the
// narrowest of its samples.
func (p *Clock) SysOffset() (SysOffset, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.f == nil {
		return SysOffset{}, fmt.Errorf("phc %s: %w", p.path, ErrClosed)
	}
	if m := p.method.Load(); m != methodExtended {
		pre, err := p.dev.ReadSysoffPrecise()
		switch {
		case err == nil:
			p.method.Store(methodPrecise)
			s := sampleFromPrecise(pre)
			return sysOffsetFrom(s, "PTP_SYS_OFFSET_PRECISE", p.reading(s)), nil
		case m == methodPrecise:
			return SysOffset{}, fmt.Errorf("phc %s: PTP_SYS_OFFSET_PRECISE: %w", p.path, err)
		}
		p.method.Store(methodExtended)
	}
	ext, err := p.dev.ReadSysoffExtendedRealTimeClock()
	if err != nil {
		return SysOffset{}, fmt.Errorf("phc %s: PTP_SYS_OFFSET_EXTENDED: %w", p.path, err)
	}
	s, ok := bestSample(samplesFromExtended(ext))
	if !ok {
		return SysOffset{}, fmt.Errorf("phc %s: PTP_SYS_OFFSET_EXTENDED returned no samples", p.path)
	}
	return sysOffsetFrom(s, "PTP_SYS_OFFSET_EXTENDED", p.reading(s)), nil
}

func (p *Clock) reading(s sample) ptp.Reading {
	last, synced := p.cfg.sync.LastSync()
	return readingOf(s, last, synced, time.Now(), &p.cfg)
}

// samplesFromExtended converts the kernel's [sys, phc, sys] triples; the
// reference clock is the one requested (CLOCK_REALTIME here).
func samplesFromExtended(ext *fbphc.PTPSysOffsetExtended) []sample {
	n := min(int(ext.Samples), len(ext.Ts))
	out := make([]sample, n)
	for i, ts := range ext.Ts[:n] {
		out[i] = sample{Before: clockNano(ts[0]), PHC: clockNano(ts[1]), After: clockNano(ts[2])}
	}
	return out
}

// sampleFromPrecise uses the hardware cross-timestamp: both clocks were
// latched at the same instant, so the window is zero.
func sampleFromPrecise(pre *fbphc.PTPSysOffsetPrecise) sample {
	rt := clockNano(pre.Realtime)
	return sample{Before: rt, PHC: clockNano(pre.Device), After: rt}
}

func clockNano(t fbphc.PtpClockTime) int64 { return t.Sec*1e9 + int64(t.Nsec) }
