package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// A long-running role takes its settings from three places, each flag from
// the first that has it:
//
//  1. the command line (-period 2s);
//  2. the environment: EMBARGO_ and the flag's name in upper case with '-'
//     as '_' (EMBARGO_PERIOD=2s, EMBARGO_ASSUME_SYNCED=1ms); a repeatable
//     flag takes several values separated by white space
//     (EMBARGO_GROUP="239.1.1.1:7171%eth0 239.1.1.2:7171%eth0");
//  3. the TOML file -config names: one key per flag, by the flag's name
//     (period = "2s", rounds = 4, group = ["239.1.1.1:7171%eth0"]).
//
// A flag set from the environment or the file counts as set (fs.Visit
// visits it), as one on the command line does. A flag in none of them keeps
// its default. An unknown key or a bad value in
// the file is an error naming file, line and key; a bad value in the
// environment names the variable. -print-config prints the effective
// settings and where each came from, with secrets redacted.

const envPrefix = "EMBARGO_"

// newRoleFlags is newFlags for a long-running role: its flags can also come
// from the environment and a config file (-config, -print-config).
func newRoleFlags(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := newFlags(name, synopsis+"\n\nEvery flag can also be set by EMBARGO_<FLAG> (e.g. EMBARGO_LOG_FORMAT=json) or in the\n-config file (log-format = \"json\"); the command line wins, then the environment.", stdout)
	fs.String("config", "", "read settings from this TOML file: key = value, keys are flag names")
	fs.Bool("print-config", false, "print the effective settings and where each came from, then exit")
	return fs
}

// secretFlags are flags whose values -print-config never shows.
var secretFlags = map[string]bool{"token": true}

// repeatable is a flag that takes a value each time it is given, and
// lists its values for -print-config.
type repeatable interface {
	repeatable()
	strings() []string
}

func (*listFlag[T]) repeatable() {}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyConfig fills each flag the command line did not set from the
// environment or from the file -config names, and prints the result if
// -print-config asks. It returns flag.ErrHelp after printing.
func applyConfig(fs *flag.FlagSet, out io.Writer) error {
	source := map[string]string{}
	fs.Visit(func(f *flag.Flag) { source[f.Name] = "flag -" + f.Name })

	// The file first, for its path: it may itself come from the environment.
	path := fs.Lookup("config").Value.String()
	if _, set := source["config"]; !set {
		if v, ok := os.LookupEnv(envName("config")); ok {
			path = v
		}
	}
	var file map[string]fileSetting
	if path != "" {
		var err error
		if file, err = readConfig(path, fs); err != nil {
			return err
		}
	}

	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if _, set := source[f.Name]; set || err != nil || f.Name == "config" || f.Name == "print-config" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			values := []string{v}
			if _, many := f.Value.(repeatable); many {
				values = strings.Fields(v)
			}
			for _, v := range values {
				if serr := fs.Set(f.Name, v); serr != nil {
					err = fmt.Errorf("%s: invalid value %q for -%s: %v", envName(f.Name), v, f.Name, why(f, serr))
					return
				}
			}
			source[f.Name] = "env " + envName(f.Name)
			return
		}
		if s, ok := file[f.Name]; ok {
			for _, v := range s.values {
				if serr := fs.Set(f.Name, v); serr != nil {
					err = fmt.Errorf("%s:%d: invalid value %q for %s: %v", path, s.line, v, f.Name, why(f, serr))
					return
				}
			}
			source[f.Name] = fmt.Sprintf("file %s:%d", path, s.line)
		}
	})
	if err != nil {
		return err
	}
	if print := fs.Lookup("print-config"); print != nil && print.Value.String() == "true" {
		printConfig(out, fs, source)
		return flag.ErrHelp
	}
	return nil
}

// printConfig writes every setting as a TOML line the file would accept,
// with where it came from; secrets are redacted.
func printConfig(w io.Writer, fs *flag.FlagSet, source map[string]string) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || f.Name == "print-config" {
			return
		}
		from, ok := source[f.Name]
		if !ok {
			from = "default"
		}
		var value string
		switch {
		case secretFlags[f.Name] && f.Value.String() != "":
			value = `"(redacted)"`
		case isBool(f):
			value = f.Value.String()
		default:
			if r, many := f.Value.(repeatable); many {
				var quoted []string
				for _, v := range r.strings() {
					quoted = append(quoted, strconv.Quote(v))
				}
				value = "[" + strings.Join(quoted, ", ") + "]"
			} else if _, err := strconv.ParseFloat(f.Value.String(), 64); err == nil {
				value = f.Value.String()
			} else {
				value = strconv.Quote(f.Value.String())
			}
		}
		fmt.Fprintf(w, "%s = %s # %s\n", f.Name, value, from)
	})
}

// why is a Set error in words: the flag package's own values say only
// "parse error", so the flag's default says what it wants instead.
func why(f *flag.Flag, err error) string {
	if err.Error() != "parse error" && err.Error() != "value out of range" {
		return err.Error()
	}
	switch d := f.DefValue; {
	case isBool(f):
		return "want true or false"
	case func() bool { _, err := time.ParseDuration(d); return err == nil }():
		return "want a duration such as 500ms, 2s or 1m30s"
	case func() bool { _, err := strconv.ParseInt(d, 0, 64); return err == nil }():
		return "want a whole number in range"
	default:
		return "want a number"
	}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// fileSetting is one key of a config file: the line it is on and its
// values as a flag would take them (several for an array).
type fileSetting struct {
	line   int
	values []string
}

// readConfig reads a flat TOML file whose keys are fs's flag names.
func readConfig(path string, fs *flag.FlagSet) (map[string]fileSetting, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(path, data, fs)
}

// parseConfig parses data, read from path, into fs's settings.
func parseConfig(path string, data []byte, fs *flag.FlagSet) (map[string]fileSetting, error) {
	// The decoder checks the syntax and says where it is wrong; the parser
	// below then reads each key with its line.
	var syntax map[string]any
	if err := toml.Unmarshal(data, &syntax); err != nil {
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, _ := derr.Position()
			return nil, fmt.Errorf("%s:%d: %s", path, row, strings.TrimPrefix(derr.Error(), "toml: "))
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	var p unstable.Parser
	p.Reset(data)
	out := map[string]fileSetting{}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Comment:
			continue
		case unstable.Table, unstable.ArrayTable:
			k := e.Key()
			k.Next()
			return nil, fmt.Errorf("%s:%d: [%s]: a config file has no tables; write each setting as key = value at the top", path, line(&p, k.Node()), k.Node().Data)
		case unstable.KeyValue:
		default:
			continue
		}
		k := e.Key()
		k.Next()
		keyNode := k.Node()
		name, at := string(keyNode.Data), line(&p, keyNode)
		if !k.IsLast() {
			return nil, fmt.Errorf("%s:%d: %s: dotted keys are not settings; write each setting as key = value at the top", path, at, name)
		}
		f := fs.Lookup(name)
		if f == nil || name == "config" || name == "print-config" {
			return nil, fmt.Errorf("%s:%d: unknown setting %q for %s (its settings are its flags: %s -h)", path, at, name, fs.Name(), fs.Name())
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s:%d: %s is set twice", path, at, name)
		}
		values, err := scalars(e.Value())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", path, at, name, err)
		}
		if _, many := f.Value.(repeatable); len(values) != 1 && !many {
			return nil, fmt.Errorf("%s:%d: %s takes one value, not a list", path, at, name)
		}
		out[name] = fileSetting{line: at, values: values}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// scalars is a value as flag strings: one for a scalar, each element's for
// an array of scalars.
func scalars(n *unstable.Node) ([]string, error) {
	switch n.Kind {
	case unstable.String, unstable.Integer, unstable.Float, unstable.Bool:
		return []string{string(n.Data)}, nil
	case unstable.Array:
		var out []string
		for it := n.Children(); it.Next(); {
			c := it.Node()
			if !slices.Contains([]unstable.Kind{unstable.String, unstable.Integer, unstable.Float, unstable.Bool}, c.Kind) {
				return nil, fmt.Errorf("a list holds strings, numbers or booleans, not a %s", c.Kind)
			}
			out = append(out, string(c.Data))
		}
		return out, nil
	default:
		return nil, fmt.Errorf("a setting is a string, number, boolean or list of them, not a %s", n.Kind)
	}
}

func line(p *unstable.Parser, n *unstable.Node) int { return p.Shape(n.Raw).Start.Line }
