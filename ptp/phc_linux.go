package ptp

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/facebook/time/phc"
	"golang.org/x/sys/unix"
)

// Offset methods, probed once per PHC: PRECISE needs driver cross-timestamp
// support (few NICs have it), EXTENDED works on every PHC.
const (
	methodUnprobed int32 = iota
	methodPrecise
	methodExtended
)

// PHC is a PTP hardware clock, assumed to run on TAI as ptp4l keeps it. It is
// read directly through its dynamic POSIX clock id. It is safe for concurrent
// use.
type PHC struct {
	cfg  phcConfig
	path string

	// mu orders reads against Close: once the file is closed its fd number
	// can be reused, and the clock id derived from it would then name
	// another file.
	mu      sync.RWMutex
	f       *os.File
	dev     *phc.Device
	clockID int32
	method  atomic.Int32
}

// NewPHC opens device, a PHC path such as /dev/ptp0 or a network interface
// name whose PHC is looked up through ethtool. A missing device or an
// interface without a PHC returns an error wrapping ErrNoDevice. The clock is
// read once so that a file that is not a PHC fails here.
func NewPHC(device string, opts ...PHCOption) (*PHC, error) {
	cfg, err := newPHCConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("ptp: phc %s: %w", device, err)
	}
	path := device
	if !strings.HasPrefix(device, "/") {
		if path, err = phc.IfaceToPHCDevice(device); err != nil {
			return nil, fmt.Errorf("ptp: phc %s: %w: %w", device, ErrNoDevice, err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("ptp: phc %s: %w: %w", device, ErrNoDevice, err)
		}
		return nil, fmt.Errorf("ptp: phc %s: %w", device, err)
	}
	dev := phc.FromFile(f)
	p := &PHC{cfg: cfg, path: path, f: f, dev: dev, clockID: dev.ClockID()}
	if _, err := p.Now(); err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

// Path is the device path, after any interface lookup.
func (p *PHC) Path() string { return p.path }

// Close releases the device; later reads return ErrClosed.
func (p *PHC) Close() error {
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
// whose distance widens the bound (see phcReading). It costs one syscall.
func (p *PHC) Now() (Reading, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.f == nil {
		return Reading{Reason: "closed"}, fmt.Errorf("ptp: phc %s: %w", p.path, ErrClosed)
	}
	var ts unix.Timespec
	before := time.Now()
	err := unix.ClockGettime(p.clockID, &ts)
	after := time.Now()
	if err != nil {
		return Reading{Reason: err.Error()}, fmt.Errorf("ptp: phc %s: clock_gettime: %w", p.path, err)
	}
	b := before.UnixNano()
	s := phcSample{Before: b, PHC: ts.Nano(), After: b + int64(after.Sub(before))}
	last, synced := p.cfg.sync.LastSync()
	return phcReading(s, last, synced, after, &p.cfg), nil
}

// SysOffset measures CLOCK_REALTIME against the PHC with
// PTP_SYS_OFFSET_PRECISE where the driver supports it (probed on first use
// and remembered) and PTP_SYS_OFFSET_EXTENDED otherwise, taking the
// narrowest of its samples.
func (p *PHC) SysOffset() (SysOffset, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.f == nil {
		return SysOffset{}, fmt.Errorf("ptp: phc %s: %w", p.path, ErrClosed)
	}
	if m := p.method.Load(); m != methodExtended {
		pre, err := p.dev.ReadSysoffPrecise()
		switch {
		case err == nil:
			p.method.Store(methodPrecise)
			s := sampleFromPrecise(pre)
			return sysOffsetFrom(s, "PTP_SYS_OFFSET_PRECISE", p.reading(s)), nil
		case m == methodPrecise:
			return SysOffset{}, fmt.Errorf("ptp: phc %s: PTP_SYS_OFFSET_PRECISE: %w", p.path, err)
		}
		p.method.Store(methodExtended)
	}
	ext, err := p.dev.ReadSysoffExtendedRealTimeClock()
	if err != nil {
		return SysOffset{}, fmt.Errorf("ptp: phc %s: PTP_SYS_OFFSET_EXTENDED: %w", p.path, err)
	}
	s, ok := bestSample(samplesFromExtended(ext))
	if !ok {
		return SysOffset{}, fmt.Errorf("ptp: phc %s: PTP_SYS_OFFSET_EXTENDED returned no samples", p.path)
	}
	return sysOffsetFrom(s, "PTP_SYS_OFFSET_EXTENDED", p.reading(s)), nil
}

func (p *PHC) reading(s phcSample) Reading {
	last, synced := p.cfg.sync.LastSync()
	return phcReading(s, last, synced, time.Now(), &p.cfg)
}

// samplesFromExtended converts the kernel's [sys, phc, sys] triples; the
// reference clock is the one requested (CLOCK_REALTIME here).
func samplesFromExtended(ext *phc.PTPSysOffsetExtended) []phcSample {
	n := min(int(ext.Samples), len(ext.Ts))
	out := make([]phcSample, n)
	for i, ts := range ext.Ts[:n] {
		out[i] = phcSample{Before: clockNano(ts[0]), PHC: clockNano(ts[1]), After: clockNano(ts[2])}
	}
	return out
}

// sampleFromPrecise uses the hardware cross-timestamp: both clocks were
// latched at the same instant, so the window is zero.
func sampleFromPrecise(pre *phc.PTPSysOffsetPrecise) phcSample {
	rt := clockNano(pre.Realtime)
	return phcSample{Before: rt, PHC: clockNano(pre.Device), After: rt}
}

func clockNano(t phc.PtpClockTime) int64 { return t.Sec*1e9 + int64(t.Nsec) }
