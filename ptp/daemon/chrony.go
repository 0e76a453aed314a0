package daemon

import (
	"fmt"
	"math"
	"net"
	"time"

	"github.com/facebook/time/ntp/chrony"

	"github.com/embargo-live/embargo/ptp"
)

// DefaultChronySocket is where Debian's chronyd listens for commands.
const DefaultChronySocket = "/run/chrony/chronyd.sock"

// chronyd's leap status (chrony's NTP_Leap, reported by "tracking").
const (
	chronyLeapNormal = 0
	chronyLeapInsert = 1
	chronyLeapDelete = 2
	chronyLeapUnsync = 3
)

// leapWidening covers a leap second chrony announces: the system clock
// may be stepped or slewed by a second around it.
const leapWidening = time.Second

// OpenChrony returns a source that takes its bound from chronyd's
// "tracking" report over its command socket (default DefaultChronySocket;
// reading it needs root or chrony's group), paired with the system clock
// chronyd disciplines. The bound is chrony's own, as its manual defines it
// under "chronyc tracking": "an absolute bound on the computer's clock
// accuracy (assuming the stratum-1 computer is correct) is given by
//
//	clock_error <= |system_time_offset| + root_dispersion + (0.5 * root_delay)"
//
// with system time offset, root dispersion and root delay the tracking
// report's, taken at its reference time. From there it widens with the
// age of the report at the stated ppm plus chrony's skew and residual
// frequency; chrony itself grows dispersion at skew plus maxclockerror.
// Leap status "not synchronised" (or no reference), or a report older than
// the staleness limit, makes the source read unsynchronized. It asks at
// chrony's update interval, within [MinPoll, poll].
func OpenChrony(socket string, opts ...Option) (*Source, error) {
	name, cfg, u, err := prepare("chrony", socket, DefaultChronySocket, opts)
	if err != nil {
		return nil, err
	}
	query := func() (sample, error) {
		var tr *chrony.Tracking
		err := u.exchange(func(c *net.UnixConn) error {
			cl := &chrony.Client{Connection: c}
			resp, err := cl.Communicate(chrony.NewTrackingPacket())
			if err != nil {
				return err
			}
			rt, ok := resp.(*chrony.ReplyTracking)
			if !ok {
				return fmt.Errorf("tracking: unexpected reply %T", resp)
			}
			tr = &rt.Tracking
			return nil
		})
		if err != nil {
			return sample{}, err
		}
		return chronySample(tr, cfg.tai()), nil
	}
	return start(name, cfg, query, u.Close)
}

// chronySample digests one tracking report; tai converts its UTC
// reference time to the base's TAI.
func chronySample(tr *chrony.Tracking, tai ptp.TAIOffset) sample {
	est := math.Abs(tr.CurrentCorrection) + tr.RootDispersion + tr.RootDelay/2
	s := sample{
		synced:   true,
		bound:    min(boundOf(est), maxBound),
		skewPPM:  math.Abs(tr.SkewPPM) + math.Abs(tr.ResidFreqPPM),
		interval: boundOf(tr.LastUpdateInterval),
	}
	if !tr.RefTime.IsZero() && tr.RefTime.Unix() > 0 {
		s.dataTAI = tai.FromTime(tr.RefTime)
	}
	s.summary = fmt.Sprintf("stratum %d, ref %s, offset %.3gs, root delay %.3gs, root dispersion %.3gs, chrony's bound %v",
		tr.Stratum, chrony.RefidToString(tr.RefID), tr.CurrentCorrection, tr.RootDelay, tr.RootDispersion, s.bound)
	switch {
	case math.IsNaN(est) || math.IsInf(est, 0) || tr.RootDelay < 0 || tr.RootDispersion < 0:
		s.synced = false
		s.summary = "chrony reports an invalid error estimate; " + s.summary
	case tr.LeapStatus >= chronyLeapUnsync:
		s.synced = false
		s.summary = fmt.Sprintf("chrony not synchronised (leap status %d)", tr.LeapStatus)
	case tr.RefID == 0 || tr.Stratum == 0 || s.dataTAI == 0:
		s.synced = false
		s.summary = "chrony has no reference yet"
	case tr.LeapStatus == chronyLeapInsert || tr.LeapStatus == chronyLeapDelete:
		s.bound += leapWidening
		s.summary += "; leap second pending, bound widened 1s"
	}
	return s
}
