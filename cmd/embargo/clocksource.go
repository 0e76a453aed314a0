package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
	"github.com/embargo-live/embargo/ptp/phc"
)

const clockHelp = "where the clock and its uncertainty bound come from: system (CLOCK_REALTIME bounded by adjtimex), " +
	"chrony[:SOCKET] (chronyd's tracking report, default " + daemon.DefaultChronySocket + "), " +
	"ptp4l[:SOCKET][,phc=DEVICE][,free-running] (ptp4l's management socket, default " + daemon.DefaultPTP4LSocket +
	"; phc= when its port uses hardware timestamping; free-running when ptp4l runs with free_running 1), " +
	"phc:DEVICE (a PTP hardware clock with a configured bound; -phc DEVICE is the same), " +
	"fbclock[:SHM] (fbclock's shared-memory window; needs a build with -tags fbclock)"

// clockSource is a parsed -clock value.
type clockSource struct {
	kind   string // system, chrony, ptp4l, phc, fbclock
	path   string // socket, device or shared-memory path; "" for the default
	phc    string // ptp4l: the PHC it disciplines
	ptp4l  daemon.PTP4LOptions
	assume time.Duration // system: -assume-synced
}

// parseClockSource parses -clock, with -phc as an alias of phc:DEVICE.
func parseClockSource(spec, phcAlias string) (clockSource, error) {
	if phcAlias != "" {
		if spec != "" && spec != "system" {
			return clockSource{}, fmt.Errorf("-phc %s and -clock %s both given: use -clock phc:%s alone", phcAlias, spec, phcAlias)
		}
		return clockSource{kind: "phc", path: phcAlias}, nil
	}
	kind, rest, _ := strings.Cut(spec, ":")
	cs := clockSource{kind: kind}
	switch kind {
	case "", "system":
		cs.kind = "system"
		if rest != "" {
			return cs, fmt.Errorf("-clock %q: system takes no argument", spec)
		}
	case "chrony", "fbclock":
		cs.path = rest
	case "phc":
		if rest == "" {
			return cs, fmt.Errorf("-clock %q: name the device, e.g. phc:/dev/ptp0", spec)
		}
		cs.path = rest
	case "ptp4l":
		parts := strings.Split(rest, ",")
		cs.path = parts[0]
		for _, p := range parts[1:] {
			switch k, v, _ := strings.Cut(p, "="); {
			case k == "phc" && v != "":
				cs.phc, cs.ptp4l.PHC = v, true
			case p == "free-running":
				cs.ptp4l.FreeRunning = true
			default:
				return cs, fmt.Errorf("-clock %q: unknown ptp4l option %q (want phc=DEVICE or free-running)", spec, p)
			}
		}
	default:
		return cs, fmt.Errorf("-clock %q: unknown source %q (want system, chrony, ptp4l, phc or fbclock)", spec, kind)
	}
	return cs, nil
}

// open opens the clock; src is the daemon source behind it, if any, for
// its status in metrics.
func (cs clockSource) open() (clock ptp.Clock, src *daemon.Source, err error) {
	if cs.assume > 0 && cs.kind != "system" {
		return nil, nil, fmt.Errorf("-assume-synced applies to -clock system only, not %s: drop it", cs.kind)
	}
	switch cs.kind {
	case "phc":
		// A failed Open's nil *phc.Clock must not become a non-nil Clock.
		p, err := phc.Open(cs.path)
		if err != nil {
			return nil, nil, err
		}
		return p, nil, nil
	case "chrony":
		src, err = daemon.OpenChrony(cs.path)
	case "ptp4l":
		var opts []daemon.Option
		if cs.phc != "" {
			// The PHC states only its read error: ptp4l's data is the bound.
			p, err := phc.Open(cs.phc, phc.WithErrorBudget(0))
			if err != nil {
				return nil, nil, err
			}
			opts = append(opts, daemon.WithBase(p))
		}
		src, err = daemon.OpenPTP4L(cs.path, cs.ptp4l, opts...)
	case "fbclock":
		c, err := daemon.OpenFBClock(cs.path)
		if err != nil {
			return nil, nil, err
		}
		return c, nil, nil
	default:
		if cs.assume > 0 {
			clock, err = ptp.NewSystem(ptp.WithAssumeSynchronized(cs.assume))
		} else {
			clock, err = ptp.NewSystem()
		}
		return clock, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	return src, src, nil
}

// name names the source for release reports: the daemon's own name (with
// its socket) when src is its daemon, else the kind and its path.
func (cs clockSource) name(src *daemon.Source) string {
	switch {
	case src != nil:
		return src.Name()
	case cs.kind == "system" && cs.assume > 0:
		return fmt.Sprintf("system, assumed synchronized ±%v", cs.assume)
	case cs.kind == "fbclock" && cs.path == "":
		return "fbclock default"
	case cs.path != "":
		return cs.kind + " " + cs.path
	}
	return cs.kind
}
