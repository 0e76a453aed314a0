// Command embargo is the one binary operators, device teams and
// performance engineers run. Each role is a subcommand; `embargo help`
// lists them and `embargo CMD -h` describes one.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/embargo-live/embargo/bench"
)

// command is one subcommand: its name, a line of help, and its entry point,
// which parses args itself and returns an error for main to report.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "run embargo's release pipeline end to end with generated keys (no config, no root)", runDemo},
		{"bench", "run a release scenario several times and report lateness, fan-out, skew, CPU, memory", runBench},
		{"keys", "generate an event's origin signing key and master key (for an edge's embedded origin)", runKeys},
		{"certs", "make a lab CA and the origin, edge, packager and publisher certificates for mutual TLS", runCerts},
		{"origin", "run the origin service: durable key rotation, CPIX to edges and packagers, licences", runOrigin},
		{"publish", "submit a resource to the origin for release on a stream at an instant", runPublish},
		{"edge", "release a rotation of keys to multicast groups at the agreed instants", runEdge},
		{"recv", "receive released keys from multicast groups and print one line per period", runRecv},
		{"version", "print the build's version", runVersion},
	}
}

func main() {
	bench.ServeSubscribers() // `embargo bench -peers` runs its subscribers in copies of this binary
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "-version", "--version":
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "embargo %s: %v\nRun 'embargo %s -h' for its flags.\n", c.name, err, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "embargo %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "embargo: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// usageError is a mistake on the command line: run prints it on one line
// with a pointer to -h, and exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// usageOut holds what the flag package prints (the usage, on -h and on an
// error alike) until parse knows which it was: help goes to w, and an
// error's usage is dropped so that its one line stays in sight.
type usageOut struct {
	buf bytes.Buffer
	w   io.Writer
}

func (u *usageOut) Write(p []byte) (int, error) { return u.buf.Write(p) }

// newFlags returns a subcommand's flag set, printing its usage to stdout
// on -h.
func newFlags(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("embargo "+name, flag.ContinueOnError)
	fs.SetOutput(&usageOut{w: stdout})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: embargo %s [flags]\n\n%s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, then (for a role) the environment and its config
// file. A mistake is a usageError; -h prints the usage and returns
// flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output().(*usageOut)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		_, werr := out.w.Write(out.buf.Bytes())
		return errors.Join(flag.ErrHelp, werr)
	}
	out.buf.Reset()
	switch {
	case err != nil:
		return usageError{err.Error()}
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if fs.Lookup("config") == nil {
		return nil
	}
	if err := applyConfig(fs, out.w); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "embargo releases content keys to every viewer of a live stream at one agreed instant.\n\nusage: embargo <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'embargo <command> -h' for a command's flags.\n")
}

// version and commit are the release's, set by scripts/release with
// -ldflags "-X main.version=... -X main.commit=..."; empty in other
// builds, which use the module version and the VCS stamp Go records.
var version, commit string

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("version", "Print the version, commit and Go toolchain of this build.", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// versionLine is "embargo VERSION (commit REV[+dirty], TIME; GO OS/ARCH)",
// from what the build recorded.
func versionLine() string {
	v, rev, at, dirty, goVersion := version, commit, "", "", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				at = ", " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	switch {
	case rev == "":
		rev = "unknown"
	case len(rev) > 12:
		rev = rev[:12]
	}
	return fmt.Sprintf("embargo %s (commit %s%s%s; %s %s/%s)", v, rev, dirty, at, goVersion, runtime.GOOS, runtime.GOARCH)
}

// flagConflict reports flags that cannot work together, saying which and
// how to fix it, and fails like a flag error (exit status 2).
func flagConflict(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}
