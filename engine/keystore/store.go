package keystore

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/seal"
)

var (
	// ErrExists: a period or event is already stored and is never replaced.
	ErrExists = errors.New("keystore: already stored")
	// ErrNotFound: nothing is stored under that name.
	ErrNotFound = errors.New("keystore: not found")
	// ErrCorrupt: a stored file does not parse or fails its checks.
	ErrCorrupt = errors.New("keystore: corrupt state")
	// ErrPermissions: the state directory is open to others.
	ErrPermissions = errors.New("keystore: state directory readable by others")
)

// Store is an origin's state directory. It is safe for concurrent use by
// one process; two processes must not share a directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open opens (creating, with mode 0700) the state directory. It refuses a
// directory that group or others can read or enter: it holds secrets.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; chmod 700 it", ErrPermissions, dir, fi.Mode().Perm())
	}
	return &Store{dir: dir}, nil
}

// SigningKey returns the origin's Ed25519 key, creating it on first use.
func (s *Store) SigningKey() (ed25519.PrivateKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.dir, "origin.key")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, data, err := NewSigningKey()
		if err != nil {
			return nil, err
		}
		if err := writeNew(path, data); err != nil {
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return ParseSigningKey(data, path)
}

// Event is one stream's master key and key rotation.
type Event struct {
	Stream   uint32          `json:"stream"`
	Master   []byte          `json:"master"` // seal.MasterKeyLen bytes
	Schedule origin.Schedule `json:"schedule"`
	Keys     int             `json:"keysPerPeriod"`
	// Resources marks a stream of published resources: its periods are
	// what publishers submit, numbered in submission order, released at
	// the instants they ask for; nothing is rotated on its schedule, whose
	// Lead and PresentDelay still apply.
	Resources bool `json:"resources,omitempty"`
}

func (s *Store) eventDir(stream uint32) string {
	return filepath.Join(s.dir, "events", strconv.FormatUint(uint64(stream), 10))
}

// CreateEvent stores a new event; an existing one is never replaced.
func (s *Store) CreateEvent(ev *Event) error {
	data, err := MarshalEvent(ev)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.eventDir(ev.Stream)
	if err := s.mkdirs(filepath.Join("events", strconv.FormatUint(uint64(ev.Stream), 10), "periods")); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, "event.json"), data)
}

// Event loads stream's event.
func (s *Store) Event(stream uint32) (*Event, error) {
	path := filepath.Join(s.eventDir(stream), "event.json")
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseEvent(stream, data, path)
}

// Events lists the stored events' streams in ascending order.
func (s *Store) Events() ([]uint32, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "events"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var out []uint32
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 32); err == nil && e.IsDir() {
			out = append(out, uint32(n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Period is one issued key period: the bundle edges get and the content
// keys packagers and licences get; or, on a resource stream, the bundle
// and the resource it releases.
type Period struct {
	Bundle   *bundle.Bundle    `json:"bundle"`
	Keys     []seal.ContentKey `json:"keys"`
	Resource []byte            `json:"resource,omitempty"`
	IssuedAt time.Time         `json:"issuedAt"`
}

func (s *Store) periodPath(stream uint32, period uint64) string {
	return filepath.Join(s.eventDir(stream), "periods", strconv.FormatUint(period, 10)+".json")
}

// PutPeriod stores an issued period durably. A period already stored is
// never overwritten: ErrExists, and the stored one stands.
func (s *Store) PutPeriod(p *Period) error {
	data, err := MarshalPeriod(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeNew(s.periodPath(p.Bundle.Stream, p.Bundle.Period), data)
}

// Period loads an issued period.
func (s *Store) Period(stream uint32, period uint64) (*Period, error) {
	path := s.periodPath(stream, period)
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePeriod(stream, period, data, path)
}

// Periods lists the stream's stored periods from `from` on, in ascending
// order.
func (s *Store) Periods(stream uint32, from uint64) ([]uint64, error) {
	ents, err := os.ReadDir(filepath.Join(s.eventDir(stream), "periods"))
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if n, err := strconv.ParseUint(name, 10, 64); ok && err == nil && strconv.FormatUint(n, 10) == name && n >= from {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return data, nil
}

// mkdirs creates rel's directories under the state directory, owner-only,
// and syncs each parent whose entry it created: an event must not vanish
// with its directory after a crash (the origin would then make it anew,
// with another master key).
func (s *Store) mkdirs(rel string) error {
	parent := s.dir
	for _, part := range strings.Split(filepath.Clean(rel), string(filepath.Separator)) {
		dir := filepath.Join(parent, part)
		err := os.Mkdir(dir, 0o700)
		switch {
		case errors.Is(err, fs.ErrExist):
		case err != nil:
			return fmt.Errorf("keystore: %w", err)
		default:
			if err := syncDir(parent); err != nil {
				return err
			}
		}
		parent = dir
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("keystore: sync %s: %w", dir, err)
	}
	return nil
}

// writeNew writes data to path atomically and durably, owner-only, and
// refuses to replace an existing file: temp file, fsync, hard link into
// place (which fails if path exists), fsync of the directory.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("keystore: %w", err)
	}
	return syncDir(dir)
}
