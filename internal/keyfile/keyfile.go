// Package keyfile guards the files that hold secrets — private keys,
// master keys, tokens — before a role reads one: a secret readable by
// group or others, or in a directory others may write to (where anyone
// could swap it), is refused with the command that fixes it.
//
// A lab that cannot help it (files on a shared volume, a CI checkout) sets
// EMBARGO_ALLOW_OPEN_KEYS=1, and the check is skipped. On Windows, where
// Unix modes do not describe who may read a file, it always is.
package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// AllowEnv names the variable that turns the check off.
const AllowEnv = "EMBARGO_ALLOW_OPEN_KEYS"

// Check reports whether the secret at path is kept as a secret should be.
func Check(path string) error {
	if runtime.GOOS == "windows" || os.Getenv(AllowEnv) == "1" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s is a secret but is open to group or others (mode %04o); fix: chmod 600 %s (a lab may set %s=1)", path, m, path, AllowEnv)
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if m := di.Mode(); m.Perm()&0o002 != 0 && m&fs.ModeSticky == 0 {
		return fmt.Errorf("%s holds a secret but anyone may write to it (mode %04o) and replace it; fix: chmod o-w %s (a lab may set %s=1)", dir, m.Perm(), dir, AllowEnv)
	}
	return nil
}

// Read checks the secret at path, then reads it.
func Read(path string) ([]byte, error) {
	if err := Check(path); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// ErrNotFile is returned by callers for a flag that takes a secret's file
// but was given what looks like the secret itself; its message never
// repeats the value.
var ErrNotFile = errors.New("takes the path of a file holding the key, not the key itself; write the key to a file (chmod 600) and give its path")
