package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
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
	source *string
	phc    *string
	assume *time.Duration
	guard  *time.Duration
	// daemon is the time daemon behind the clock once open, if any.
	daemon **daemon.Source
	// name names the clock's source once open, for release reports.
	name *string
}

func addClockFlags(fs interface {
	String(string, string, string) *string
	Duration(string, time.Duration, string) *time.Duration
}) clockFlags {
	return clockFlags{
		source: fs.String("clock", "system", clockHelp),
		daemon: new(*daemon.Source),
		name:   new(string),
		phc:    fs.String("phc", "", "PTP hardware clock device (e.g. /dev/ptp0), the same as -clock phc:DEVICE"),
		assume: fs.Duration("assume-synced", 0, "take an undisciplined system clock as synchronized within this bound (laptops, tests); never use on a production edge"),
		guard:  fs.Duration("clock-guard", ptp.DefaultGuardWindow, "check the clock against the local oscillator over this window, holding over on the oscillator if it steps or drifts beyond its bound (costs 100 ppm of the window in lateness; 0 turns the guard off)"),
	}
}

func (c clockFlags) open(log *slog.Logger) (ptp.Clock, error) {
	cs, err := parseClockSource(*c.source, *c.phc)
	if err != nil {
		return nil, err
	}
	cs.assume = *c.assume
	clock, src, err := cs.open()
	*c.daemon, *c.name = src, cs.name(src)
	if err != nil || *c.guard <= 0 {
		return clock, err
	}
	*c.name += ", guarded"
	return ptp.NewGuard(clock, ptp.WithGuardWindow(*c.guard), ptp.WithGuardLogger(log)), nil
}

// roleFlags are the flags every long-running role has: logging and clock.
type roleFlags struct {
	log   logFlags
	clock clockFlags
}

func addRoleFlags(fs *flag.FlagSet) roleFlags {
	return roleFlags{log: addLogFlags(fs, "info"), clock: addClockFlags(fs)}
}

// logFlags choose a role's log level and format.
type logFlags struct{ level, format *string }

func addLogFlags(fs *flag.FlagSet, level string) logFlags {
	return logFlags{
		level:  fs.String("log", level, "log level: debug, info, warn, error"),
		format: fs.String("log-format", "text", "log format: text (logfmt) or json (one object per line); keys are the same in both"),
	}
}

// logger logs to w at the level and in the format the flags ask for.
func (l logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(*l.level)); err != nil {
		return nil, fmt.Errorf("-log %q: want debug, info, warn or error", *l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch *l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", *l.format)
	}
}

// open makes the logger (to stderr) and the clock the flags ask for, and
// warns, saying what it means for this role, if the clock is not
// synchronized.
func (r roleFlags) open(stderr io.Writer, unsynced string) (*slog.Logger, ptp.Clock, error) {
	log, err := r.log.logger(stderr)
	if err != nil {
		return nil, nil, err
	}
	clock, err := r.clock.open(log)
	if err != nil {
		return nil, nil, err
	}
	if err := metrics.Ready(metrics.ClockCheck(clock)); err != nil {
		log.Warn("clock not synchronized: "+unsynced+" (use -assume-synced only in a lab)", "why", err)
	}
	return log, clock, nil
}

// checkOriginURL checks a flag's URL of the origin service: https, with a host.
func checkOriginURL(flag, s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return usageError{fmt.Sprintf("%s %q: want the origin's https URL, e.g. https://%s", flag, s, strings.TrimPrefix(strings.TrimPrefix(s, "http://"), "//"))}
	}
	return nil
}

// originsFlag is a repeatable flag naming an origin's replicas: each
// value an https URL or a comma-separated list of them.
type originsFlag struct {
	name string
	urls []string
}

func (o *originsFlag) String() string { return strings.Join(o.urls, ",") }

func (o *originsFlag) Set(v string) error {
	for _, u := range list(v) {
		if err := checkOriginURL("-"+o.name, u); err != nil {
			return err
		}
		o.urls = append(o.urls, strings.TrimSuffix(u, "/"))
	}
	return nil
}

func (*originsFlag) repeatable() {}

func (o *originsFlag) strings() []string { return o.urls }

// count is n and noun, plural unless n is 1: "1 period", "2 periods".
func count[N ~int | ~int64 | ~uint64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// listenError says why flag's address could not be listened on, without
// the "listen tcp" wrapping; a port in use says what to do.
func listenError(flag, addr string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if errno == syscall.EADDRINUSE {
			return fmt.Errorf("%s %s: %w (is another instance running? choose another address)", flag, addr, errno)
		}
		return fmt.Errorf("%s %s: %w", flag, addr, errno)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

// serveHTTP listens on addr and serves h, as one of the role's parts in g,
// until ctx (g's context) ends; it returns the address it listens on. A
// server that fails ends the role with its error. Read and idle timeouts
// bound idle or slow clients; write is the longest a response may take.
func serveHTTP(ctx context.Context, g *errgroup.Group, addr string, h http.Handler, write time.Duration) (string, error) {
	return serveHTTPS(ctx, g, addr, h, write, nil, nil)
}

// serveHTTPS is serveHTTP over TLS with tlsConf (plain HTTP if nil), its
// listener wrapped first by wrap (if not nil).
func serveHTTPS(ctx context.Context, g *errgroup.Group, addr string, h http.Handler, write time.Duration, tlsConf *tls.Config, wrap func(net.Listener) net.Listener) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
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
