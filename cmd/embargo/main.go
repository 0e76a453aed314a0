// Command embargo is the one binary operators, device teams and
// performance engineers run. Each role is a subcommand; `embargo help`
// lists them and `embargo CMD -h` describes one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
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
		{"certs", "make a lab CA and the origin, edge and packager certificates for mutual TLS", runCerts},
		{"origin", "run the origin service: durable key rotation, CPIX to edges and packagers, licences", runOrigin},
		{"edge", "release a rotation of keys to multicast groups at the agreed instants", runEdge},
		{"recv", "receive released keys from multicast groups and print one line per period", runRecv},
		{"version", "print the build's version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
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
		case errors.Is(err, errUsage):
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

// errUsage reports a flag error the flag package has already printed.
var errUsage = errors.New("usage")

// newFlags returns a subcommand's flag set, printing its usage to stdout.
func newFlags(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("embargo "+name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: embargo %s [flags]\n\n%s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, mapping flag errors to errUsage (already reported).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
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

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("version", "Print the module version and Go toolchain of this build.", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	version, goVersion := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
	}
	fmt.Fprintf(stdout, "embargo %s (%s)\n", version, goVersion)
	return nil
}

// flagConflict reports flags that cannot work together, saying which and
// how to fix it, and fails like a flag error (exit status 2).
func flagConflict(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "embargo: "+format+"\n", args...)
	return errUsage
}
