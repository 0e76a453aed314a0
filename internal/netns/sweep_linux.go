package netns

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A test binary killed by -timeout or a signal never runs its cleanups, and
// namespaces outlive processes. So every lab holds an flock on a file named
// after its id for as long as it lives; the kernel drops the lock when the
// process dies, and Build deletes the namespaces of any lab whose lock it can
// take. Labs are only ever deleted by their id, so namespaces this package
// did not create are never touched.

const (
	// lockDir holds one lock file per live (or abandoned) lab. It is on the
	// same tmpfs as runDir, so both vanish together at reboot.
	lockDir = "/run/embargo-netns"
	// namePrefix starts every id; an id is namePrefix and 6 hex digits, so
	// no id is a prefix of another and host names stay within 15 bytes.
	namePrefix = "emb"
	idLen      = len(namePrefix) + 6
)

func labID(tag [3]byte) string { return fmt.Sprintf("%s%x", namePrefix, tag[:]) }

func isID(s string) bool {
	if len(s) != idLen || !strings.HasPrefix(s, namePrefix) {
		return false
	}
	for _, c := range s[len(namePrefix):] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// claim picks an unused lab tag and returns its lock file, locked.
func claim() ([3]byte, *os.File, error) {
	var tag [3]byte
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return tag, nil, fmt.Errorf("claim lab id: %w", err)
	}
	for range 32 {
		rand.Read(tag[:])
		id := labID(tag)
		names, err := labNamespaces(id)
		if err != nil {
			return tag, nil, fmt.Errorf("claim lab id: %w", err)
		}
		if len(names) > 0 {
			continue // a namespace of ours with no lock file; leave it be
		}
		f, err := os.OpenFile(filepath.Join(lockDir, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return tag, nil, fmt.Errorf("claim lab id: %w", err)
		}
		// A sweep may lock and remove the file between its creation and our
		// lock; then the lock protects nothing and we start over.
		if !lockIfLinked(f) {
			f.Close()
			continue
		}
		fmt.Fprintf(f, "%d\n", os.Getpid()) // for people wondering who owns it
		return tag, f, nil
	}
	return tag, nil, errors.New("claim lab id: no free id after 32 tries")
}

// lockIfLinked takes f's lock without waiting and reports whether f is still
// the file its name points to.
func lockIfLinked(f *os.File) bool {
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false
	}
	var held, named unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(f.Name(), &named) != nil {
		return false
	}
	return held.Ino == named.Ino && held.Dev == named.Dev
}

// sweep deletes the labs whose owners died without cleaning up. It returns
// one message per lab it handled, for the test log; failures are reported
// but do not stop the new lab from being built.
func sweep(ip string) []string {
	entries, err := os.ReadDir(lockDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return []string{fmt.Sprintf("netns: sweep: %v", err)}
	}
	var msgs []string
	for _, e := range entries {
		if !isID(e.Name()) {
			continue
		}
		f, err := os.Open(filepath.Join(lockDir, e.Name()))
		if err != nil {
			continue // removed by a concurrent sweep
		}
		if lockIfLinked(f) {
			if err := deleteLab(ip, e.Name()); err != nil {
				msgs = append(msgs, fmt.Sprintf("netns: sweep abandoned lab %s: %v", e.Name(), err))
			} else {
				os.Remove(f.Name())
				msgs = append(msgs, fmt.Sprintf("netns: swept lab %s abandoned by a process that died", e.Name()))
			}
		}
		f.Close()
	}
	return msgs
}

// labNamespaces lists the namespaces whose names carry id.
func labNamespaces(id string) ([]string, error) {
	entries, err := os.ReadDir(runDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// deleteLab deletes every namespace of lab id; deleting a namespace destroys
// its links, and destroying one end of a veth destroys the other. Deleting
// nothing is success, which makes it idempotent.
func deleteLab(ip, id string) error {
	names, err := labNamespaces(id)
	if err != nil || len(names) == 0 {
		return err
	}
	var script strings.Builder
	for _, name := range names {
		// One name per line, never `ip -all netns del`, which would delete
		// namespaces that are not ours.
		fmt.Fprintf(&script, "netns del %s\n", name)
	}
	runErr := runIP(ip, script.String(), "-force", "-batch", "-")
	left, err := labNamespaces(id)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("namespaces left after delete: %s (%v)", strings.Join(left, " "), runErr)
	}
	return nil
}
