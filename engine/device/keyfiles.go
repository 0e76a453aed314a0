package device

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/embargo-live/embargo/internal/keyfile"
	"github.com/embargo-live/embargo/seal"
)

// ReadOriginKey reads the origin's public key file (origin.pub: one PKIX
// "PUBLIC KEY" PEM block, PROTOCOL.md §12), for Config.OriginKey.
func ReadOriginKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := seal.ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// ReadMasterKey reads an event's master key file (master.key: the key in
// hex, PROTOCOL.md §12), for Config.Master. The file is a secret: one
// readable by group or others is refused (internal/keyfile). Given the key
// itself instead of a path, it says so without repeating the key.
func ReadMasterKey(path string) ([]byte, error) {
	data, err := keyfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		if m, herr := hex.DecodeString(path); herr == nil && len(m) == seal.MasterKeyLen {
			return nil, fmt.Errorf("the master key %w", keyfile.ErrNotFile)
		}
	}
	if err != nil {
		return nil, err
	}
	m, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(m) != seal.MasterKeyLen {
		return nil, fmt.Errorf("%s: want %d bytes of hex", path, seal.MasterKeyLen)
	}
	return m, nil
}
