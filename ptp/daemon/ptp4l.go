package daemon

import (
	"fmt"
	"math"
	"net"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/embargo-live/embargo/ptp"
)

// DefaultPTP4LSocket is ptp4l's default management socket (uds_address).
const DefaultPTP4LSocket = "/var/run/ptp4l"

// PTP4LOptions says how the ptp4l instance is run, which management
// messages cannot tell.
type PTP4LOptions struct {
	// FreeRunning: ptp4l runs with free_running 1, measuring the clock
	// against the grandmaster without steering it, so its port stays
	// UNCALIBRATED; such a port is then accepted beside SLAVE, since the
	// master offset it reports is a measurement of an unsteered clock.
	// Without it only a SLAVE port (servo locked) releases.
	FreeRunning bool
	// PHC: the base clock (WithBase) is the PHC ptp4l disciplines, read in
	// TAI. Without it the base is the system clock, which ptp4l disciplines
	// only with software timestamping (-S); a port reporting hardware
	// timestamping then holds, saying to pair the source with its PHC.
	PHC bool
}

// ptp4lData is one set of answers from ptp4l.
type ptp4lData struct {
	status *protocol.TimeStatusNPTLV
	port   *protocol.PortPropertiesNPTLV
	cur    *protocol.CurrentDataSetTLV
	parent *protocol.ParentDataSetTLV
}

// OpenPTP4L returns a source that takes its bound from ptp4l's management
// socket (default DefaultPTP4LSocket), asking TIME_STATUS_NP,
// PORT_PROPERTIES_NP, CURRENT_DATA_SET and PARENT_DATA_SET about once a
// poll (ptp4l's default sync interval is 1 s). linuxptp states no bound of
// its own; the one used is fbclock's (facebook/time/fbclock/daemon, whose
// default M is "mean(clockaccuracy) + abs(mean(offset)) + 1.0 *
// stddev(offset)") for a single sample, plus the mean path delay for path
// asymmetry, which IEEE 1588 assumes away and which can shift the offset by
// up to the one-way delay (the same term as chrony's root delay/2):
//
//	bound = grandmaster clockAccuracy + |master offset| + mean path delay
//
// taken at the ingress time of the last sync and widened with its age at
// the stated ppm; |master offset| is never less than fbclock's
// |mean(offset)| + stddev(offset) over the last 100 syncs. An unknown or >10 s accuracy counts 25 s, as
// facebook/time's ClockAccuracy.Duration does. No grandmaster (gmPresent
// false), a port not in SLAVE (see PTP4LOptions.FreeRunning), no sync or
// no path delay measured yet, or data older than the staleness limit makes
// the source read unsynchronized.
func OpenPTP4L(socket string, po PTP4LOptions, opts ...Option) (*Source, error) {
	name, cfg, u, err := prepare("ptp4l", socket, DefaultPTP4LSocket, opts)
	if err != nil {
		return nil, err
	}
	var hist offsetHistory // only the poller touches it
	query := func() (sample, error) {
		var d ptp4lData
		err := u.exchange(func(c *net.UnixConn) error {
			mc := &protocol.MgmtClient{Connection: c}
			var err error
			if d.status, err = mc.TimeStatusNP(); err != nil {
				return fmt.Errorf("TIME_STATUS_NP: %w", err)
			}
			if d.port, err = mc.PortPropertiesNP(); err != nil {
				return fmt.Errorf("PORT_PROPERTIES_NP: %w", err)
			}
			if d.cur, err = mc.CurrentDataSet(); err != nil {
				return fmt.Errorf("CURRENT_DATA_SET: %w", err)
			}
			if d.parent, err = mc.ParentDataSet(); err != nil {
				return fmt.Errorf("PARENT_DATA_SET: %w", err)
			}
			return nil
		})
		if err != nil {
			return sample{}, err
		}
		hist.add(d.status.IngressTimeNS, d.status.MasterOffsetNS)
		return ptp4lSample(d, po, cfg.tai(), hist.spread()), nil
	}
	return start(name, cfg, query, u.Close)
}

// offsetWindow is fbclock's default window for its M (MathDefaultM).
const offsetWindow = 100

// offsetHistory keeps ptp4l's last master offsets, one per sync received.
type offsetHistory struct {
	last int64 // ingress time of the last offset kept
	offs []float64
}

func (h *offsetHistory) add(ingress, off int64) {
	if ingress == 0 || ingress == h.last {
		return // no sync, or the same sync asked about twice
	}
	h.last = ingress
	if len(h.offs) == offsetWindow {
		h.offs = append(h.offs[:0], h.offs[1:]...)
	}
	h.offs = append(h.offs, float64(off))
}

// spread is fbclock's offset term, |mean(offset)| + stddev(offset) (sample
// standard deviation), over the offsets kept.
func (h *offsetHistory) spread() time.Duration {
	n := float64(len(h.offs))
	if n == 0 {
		return 0
	}
	var sum float64
	for _, o := range h.offs {
		sum += o
	}
	mean := sum / n
	var ss float64
	for _, o := range h.offs {
		ss += (o - mean) * (o - mean)
	}
	sd := 0.0
	if n > 1 {
		sd = math.Sqrt(ss / (n - 1))
	}
	return boundOf((math.Abs(mean) + sd) / 1e9)
}

// ptp4lSample digests one set of answers; tai converts a software-stamped
// ingress time (CLOCK_REALTIME, UTC) to TAI; spread is the offset history's
// term (offsetHistory.spread), which the offset term is never below.
func ptp4lSample(d ptp4lData, po PTP4LOptions, tai ptp.TAIOffset, spread time.Duration) sample {
	acc := d.parent.GrandmasterClockQuality.ClockAccuracy.Duration()
	delay := d.cur.MeanPathDelay.Nanoseconds()
	off := d.status.MasterOffsetNS
	s := sample{synced: true, bound: min(acc+max(absDuration(off), spread)+boundOf(delay/1e9), maxBound)}
	hw := d.port.Timestamping != protocol.TimestampingSoftware
	if d.status.IngressTimeNS != 0 {
		s.dataTAI = d.status.IngressTimeNS
		if !hw {
			s.dataTAI += int64(tai)
		}
	}
	state := d.port.PortState
	s.summary = fmt.Sprintf("port %s (%s timestamping), grandmaster %s accuracy %v, master offset %v (|mean|+stddev %v), path delay %.0fns, bound %v",
		state, tsName(hw), d.status.GMIdentity, acc, time.Duration(off), spread, delay, s.bound)
	switch {
	case math.IsNaN(delay):
		s.synced = false
		s.summary = "ptp4l reports an invalid path delay; " + s.summary
	case d.status.GMPresent == 0:
		s.synced = false
		s.summary = "ptp4l has no grandmaster; " + s.summary
	case state != protocol.PortStateSlave && !(po.FreeRunning && state == protocol.PortStateUncalibrated):
		s.synced = false
		s.summary = "ptp4l port not in SLAVE state; " + s.summary
	case s.dataTAI == 0:
		s.synced = false
		s.summary = "ptp4l has received no sync yet; " + s.summary
	case delay <= 0:
		// Without a path delay the asymmetry term is missing and the
		// offset itself is not yet corrected for the path.
		s.synced = false
		s.summary = "ptp4l has not measured the path delay yet; " + s.summary
	case hw && !po.PHC:
		s.synced = false
		s.summary = "ptp4l uses hardware timestamping and disciplines the PHC, not the system clock: pair the source with the PHC (ptp4l:SOCKET,phc=/dev/ptpN); " + s.summary
	case !hw && po.PHC:
		s.synced = false
		s.summary = "ptp4l uses software timestamping and disciplines the system clock, not the PHC given: drop phc=; " + s.summary
	}
	return s
}

func tsName(hw bool) string {
	if hw {
		return "hardware"
	}
	return "software"
}

// absDuration is |ns|, saturating at maxBound.
func absDuration(ns int64) time.Duration {
	if ns < -maxBound || ns > maxBound {
		return maxBound
	}
	return time.Duration(max(ns, -ns))
}
