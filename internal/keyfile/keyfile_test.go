package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	if os.Getenv(AllowEnv) != "" {
		t.Setenv(AllowEnv, "")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	if err := os.WriteFile(path, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := Read(path); err != nil || string(data) != "secret\n" {
		t.Fatalf("a 0600 key in a 0700 directory: %q, %v", data, err)
	}
	for _, c := range []struct {
		file, dir os.FileMode
		want      string
	}{
		{0o644, 0o700, "open to group or others (mode 0644); fix: chmod 600 " + path},
		{0o640, 0o700, "(mode 0640)"},
		{0o600, 0o777, dir + " holds a secret but anyone may write to it (mode 0777) and replace it; fix: chmod o-w " + dir},
	} {
		os.Chmod(path, c.file)
		os.Chmod(dir, c.dir)
		if _, err := Read(path); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret\n") {
			t.Errorf("file %04o dir %04o: %v, want %q", c.file, c.dir, err, c.want)
		}
		t.Setenv(AllowEnv, "1")
		if err := Check(path); err != nil {
			t.Errorf("with %s=1: %v", AllowEnv, err)
		}
		t.Setenv(AllowEnv, "")
	}
	// A shared directory with the sticky bit (/tmp) is not anyone's to
	// swap files in.
	os.Chmod(path, 0o600)
	os.Chmod(dir, 0o777|os.ModeSticky)
	if err := Check(path); err != nil {
		t.Errorf("sticky directory: %v", err)
	}
	os.Chmod(dir, 0o700)
}
