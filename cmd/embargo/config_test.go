package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "role.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// printConfig runs a role with -print-config and returns its settings by
// name, each as "value # source".
func printedConfig(t *testing.T, args ...string) map[string]string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), append(args, "-print-config"), &out, &errb); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errb.String())
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		name, rest, ok := strings.Cut(l, " = ")
		if !ok {
			t.Fatalf("-print-config line %q is not key = value", l)
		}
		got[name] = rest
	}
	return got
}

// TestConfigPrecedence: each flag comes from the command line, else the
// environment, else the file, else its default — and -print-config says
// which.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `# an edge
period = "3s"
rounds = 5
lead = "9s"
group = ["239.255.77.71:7171%lo", "239.255.77.72:7171%lo"]
`)
	t.Setenv("EMBARGO_ROUNDS", "6")
	t.Setenv("EMBARGO_LEAD", "8s")
	got := printedConfig(t, "edge", "-config", path, "-lead", "3s")
	for name, want := range map[string]string{
		"period":  `"3s" # file ` + path + `:2`,
		"rounds":  `6 # env EMBARGO_ROUNDS`,
		"lead":    `"3s" # flag -lead`,
		"group":   `["239.255.77.71:7171%lo", "239.255.77.72:7171%lo"] # file ` + path + `:5`,
		"present": `"2s" # default`,
	} {
		if got[name] != want {
			t.Errorf("%s = %s, want %s", name, got[name], want)
		}
	}
	if _, ok := got["config"]; ok {
		t.Error("-print-config lists -config itself")
	}
	// What it prints is a config file that reads back to the same settings.
	var out, errb bytes.Buffer
	run(context.Background(), []string{"edge", "-config", path, "-print-config"}, &out, &errb)
	again := printedConfig(t, "edge", "-config", writeConfig(t, out.String()))
	if strings.Fields(again["period"])[0] != `"3s"` || strings.Fields(again["rounds"])[0] != "6" {
		t.Errorf("printed config does not read back: %v", again)
	}
}

// TestConfigFromEnvironment: EMBARGO_CONFIG names the file, and a
// repeatable flag takes several values from one variable.
func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("EMBARGO_CONFIG", writeConfig(t, "log = \"debug\"\n"))
	t.Setenv("EMBARGO_EDGE", "127.0.0.1:7272 127.0.0.1:7273")
	got := printedConfig(t, "recv")
	if !strings.HasPrefix(got["edge"], `["127.0.0.1:7272", "127.0.0.1:7273"] # env EMBARGO_EDGE`) {
		t.Errorf("edge = %s", got["edge"])
	}
	if got := printedConfig(t, "edge"); !strings.HasPrefix(got["log"], `"debug" # file`) {
		t.Errorf("log = %s", got["log"])
	}
}

// TestConfigRedactsSecrets: -print-config never shows a secret.
func TestConfigRedactsSecrets(t *testing.T) {
	t.Setenv("EMBARGO_TOKEN", "s3cret-licence-token")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"recv", "-print-config"}, &out, &errb); code != 0 || strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), `token = "(redacted)" # env EMBARGO_TOKEN`) {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
}

// TestConfigErrors: every mistake in a file or the environment is one line
// naming the file and line (or the variable), the key and what it wants.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		file, env, want string
	}{
		{file: "period = \"2s\"\nperod = \"3s\"\n", want: `:2: unknown setting "perod" for embargo edge`},
		{file: "\n\nperiod = \"3x\"\n", want: `:3: invalid value "3x" for period: want a duration`},
		{file: "rounds = 1.5\n", want: `:1: invalid value "1.5" for rounds: want a whole number`},
		{file: "period = \"3s\n", want: `:1: basic strings cannot have new lines`},
		{file: "[edge]\nperiod = \"1s\"\n", want: `:1: [edge]: a config file has no tables`},
		{file: "clock.guard = \"1s\"\n", want: `:1: clock: dotted keys are not settings`},
		{file: "period = [\"1s\", \"2s\"]\n", want: `:1: period takes one value, not a list`},
		{file: "period = { a = 1 }\n", want: `:1: period: a setting is a string, number, boolean or list of them`},
		{file: "period = \"1s\"\nperiod = \"2s\"\n", want: `:2: key period is already defined`},
		{file: "config = \"other.toml\"\n", want: `:1: unknown setting "config"`},
		{env: "EMBARGO_REPEAT=many", want: `EMBARGO_REPEAT: invalid value "many" for -repeat: want a whole number`},
		{env: "EMBARGO_LOG_FORMAT=xml", want: `-log-format "xml": want text or json`},
	} {
		args := []string{"edge", "-keys", t.TempDir()}
		if c.file != "" {
			args = append(args, "-config", writeConfig(t, c.file))
		}
		if c.env != "" {
			name, value, _ := strings.Cut(c.env, "=")
			t.Setenv(name, value)
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb)
		first, _, _ := strings.Cut(errb.String(), "\n")
		if code == 0 || !strings.Contains(first, c.want) || strings.Contains(errb.String(), "usage:") {
			t.Errorf("%q %q: exit %d, stderr %q", c.file, c.env, code, errb.String())
		}
		if c.env != "" {
			os.Unsetenv(strings.Split(c.env, "=")[0])
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"edge", "-config", filepath.Join(t.TempDir(), "none.toml")}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "none.toml: no such file") {
		t.Errorf("missing file: exit %d, %q", code, errb.String())
	}
}

// FuzzParseConfig: no file makes the config reader panic, and what it
// accepts names only the flag set's flags.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("period = \"2s\"\nrounds = 4\ngroup = [\"239.1.1.1:7171\"]\n# c\n"))
	f.Add([]byte("[t]\na.b = 1\n"))
	f.Add([]byte("x = 1979-05-27T07:32:00Z\ny = [[1], {a = 1}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := flag.NewFlagSet("embargo fuzz", flag.ContinueOnError)
		fs.String("period", "", "")
		fs.Int("rounds", 0, "")
		fs.Var(groupsFlag(), "group", "")
		got, err := parseConfig("f.toml", data, fs)
		if err != nil {
			return
		}
		for name, s := range got {
			if fs.Lookup(name) == nil || s.line < 1 || len(s.values) == 0 && name != "group" {
				t.Fatalf("accepted %q: %+v", name, s)
			}
		}
	})
}
