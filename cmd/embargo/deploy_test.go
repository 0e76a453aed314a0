package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployConfigs: each example config in deploy/ is read by its role
// without error, and every key in it takes effect (-print-config names the
// file as its source).
func TestDeployConfigs(t *testing.T) {
	files, err := filepath.Glob("../../deploy/*.toml")
	if err != nil || len(files) != 3 {
		t.Fatalf("deploy/*.toml: %v %v", files, err)
	}
	for _, path := range files {
		role := strings.TrimSuffix(filepath.Base(path), ".toml")
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{role, "-config", path, "-print-config"}, &out, &errb); code != 0 {
			t.Errorf("%s: exit %d: %s", path, code, errb.String())
			continue
		}
		if n := strings.Count(out.String(), "# file "+path); n < 5 {
			t.Errorf("%s: only %d settings from the file:\n%s", path, n, out.String())
		}
	}
}
