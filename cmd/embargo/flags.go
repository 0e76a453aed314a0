package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/phc"
)

// listFlag is a repeatable flag of values parse reads and String writes.
type listFlag[T fmt.Stringer] struct {
	values []T
	parse  func(string) (T, error)
}

func (l *listFlag[T]) String() string { return strings.Join(l.strings(), ",") }

// strings is each value as String writes it.
func (l *listFlag[T]) strings() []string {
	var s []string
	for _, x := range l.values {
		s = append(s, x.String())
	}
	return s
}

func (l *listFlag[T]) Set(v string) error {
	x, err := l.parse(v)
	if err != nil {
		return err
	}
	l.values = append(l.values, x)
	return nil
}

// groupsFlag is a repeatable -group flag, edgesFlag a repeatable
// host:port one.
func groupsFlag() *listFlag[udp.Group] { return &listFlag[udp.Group]{parse: udp.ParseGroup} }

func edgesFlag() *listFlag[netip.AddrPort] {
	return &listFlag[netip.AddrPort]{parse: netip.ParseAddrPort}
}

// groupsOrDefault is the groups given, or udp.Loopback.
func groupsOrDefault(g *listFlag[udp.Group]) []udp.Group {
	if len(g.values) == 0 {
		return []udp.Group{udp.Loopback}
	}
	return g.values
}

const groupHelp = "multicast group as [source@]group:port[%interface][/hops], repeatable (default " + "239.255.77.71:7171%lo, hop limit 0)"

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
	guard  *time.Duration
}

func addClockFlags(fs interface {
	String(string, string, string) *string
	Duration(string, time.Duration, string) *time.Duration
}) clockFlags {
	return clockFlags{
		phc:    fs.String("phc", "", "PTP hardware clock device (e.g. /dev/ptp0); default: the system clock bounded by adjtimex"),
		assume: fs.Duration("assume-synced", 0, "take an undisciplined system clock as synchronized within this bound (laptops, tests); never use on a production edge"),
		guard:  fs.Duration("clock-guard", ptp.DefaultGuardWindow, "check the clock against the local oscillator over this window, holding over on the oscillator if it steps or drifts beyond its bound (costs 100 ppm of the window in lateness; 0 turns the guard off)"),
	}
}

func (c clockFlags) open(log *slog.Logger) (ptp.Clock, error) {
	var clock ptp.Clock
	var err error
	switch {
	case *c.phc != "":
		// A failed Open's nil *phc.Clock must not become a non-nil Clock.
		p, perr := phc.Open(*c.phc)
		if perr != nil {
			return nil, perr
		}
		clock = p
	case *c.assume > 0:
		clock, err = ptp.NewSystem(ptp.WithAssumeSynchronized(*c.assume))
	default:
		clock, err = ptp.NewSystem()
	}
	if err != nil || *c.guard <= 0 {
		return clock, err
	}
	return ptp.NewGuard(clock, ptp.WithGuardWindow(*c.guard), ptp.WithGuardLogger(log)), nil
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
	clock, err := r.clock.open(log)
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

// serveHTTP listens on addr and serves h, as one of the role's parts in g,
// until ctx (g's context) ends; it returns the address it listens on. A
// server that fails ends the role with its error. Read and idle timeouts
// bound idle or slow clients; write is the longest a response may take.
func serveHTTP(ctx context.Context, g *errgroup.Group, addr string, h http.Handler, write time.Duration) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: write, IdleTimeout: 60 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	return ln.Addr().String(), nil
}

// list splits a comma-separated flag value, dropping empty entries.
func list(v string) []string {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
