package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
)

// groupsFlag is a repeatable -group flag; empty means udp.Loopback.
type groupsFlag []udp.Group

func (g *groupsFlag) String() string {
	var s []string
	for _, x := range *g {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func (g *groupsFlag) Set(v string) error {
	x, err := udp.ParseGroup(v)
	if err != nil {
		return err
	}
	*g = append(*g, x)
	return nil
}

func (g groupsFlag) orDefault() []udp.Group {
	if len(g) == 0 {
		return []udp.Group{udp.Loopback}
	}
	return g
}

const groupHelp = "multicast group as [source@]group:port[%interface][/hops], repeatable (default " + "239.255.77.71:7171%lo, hop limit 0)"

// edgesFlag is a repeatable host:port flag.
type edgesFlag []netip.AddrPort

func (e *edgesFlag) String() string {
	var s []string
	for _, x := range *e {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func (e *edgesFlag) Set(v string) error {
	a, err := netip.ParseAddrPort(v)
	if err != nil {
		return err
	}
	*e = append(*e, a)
	return nil
}

// streamsFlag is a comma-separated list of stream ids.
type streamsFlag []uint32

func (s *streamsFlag) String() string {
	var out []string
	for _, x := range *s {
		out = append(out, strconv.FormatUint(uint64(x), 10))
	}
	return strings.Join(out, ",")
}

func (s *streamsFlag) Set(v string) error {
	*s = nil
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return fmt.Errorf("stream %q: %w", f, err)
		}
		*s = append(*s, uint32(n))
	}
	return nil
}

// clockFlags selects an edge's clock.
type clockFlags struct {
	phc    *string
	assume *time.Duration
}

func addClockFlags(fs interface {
	String(string, string, string) *string
	Duration(string, time.Duration, string) *time.Duration
}) clockFlags {
	return clockFlags{
		phc:    fs.String("phc", "", "PTP hardware clock device (e.g. /dev/ptp0); default: the system clock bounded by adjtimex"),
		assume: fs.Duration("assume-synced", 0, "take an undisciplined system clock as synchronized within this bound (laptops, tests); never use on a production edge"),
	}
}

func (c clockFlags) open() (ptp.Clock, error) {
	if *c.phc != "" {
		return ptp.NewPHC(*c.phc)
	}
	if *c.assume > 0 {
		return ptp.NewSystem(ptp.WithAssumeSynchronized(*c.assume))
	}
	return ptp.NewSystem()
}

// roleFlags are the flags every long-running role has: log level and clock.
type roleFlags struct {
	level *string
	clock clockFlags
}

func addRoleFlags(fs *flag.FlagSet) roleFlags {
	return roleFlags{
		level: fs.String("log", "info", "log level: debug, info, warn, error"),
		clock: addClockFlags(fs),
	}
}

// open makes the logger (to stderr) and the clock the flags ask for, and
// warns, saying what it means for this role, if the clock is not
// synchronized.
func (r roleFlags) open(stderr io.Writer, unsynced string) (*slog.Logger, ptp.Clock, error) {
	log, err := newLogger(stderr, *r.level)
	if err != nil {
		return nil, nil, err
	}
	clock, err := r.clock.open()
	if err != nil {
		return nil, nil, err
	}
	if rd, err := clock.Now(); err != nil || rd.State != ptp.StateSynchronized {
		log.Warn("clock not synchronized: "+unsynced+" (use -assume-synced only in a lab)", "state", rd.State, "reason", rd.Reason, "err", err)
	}
	return log, clock, nil
}

// newLogger logs text to w at the given level (debug, info, warn, error).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
