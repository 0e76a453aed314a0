package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/embargo-live/embargo/engine/device"
	"github.com/embargo-live/embargo/internal/keyfile"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/seal"
)

// Key files in a keys directory.
const (
	originKeyFile = "origin.key" // Ed25519 private key, PKCS #8 PEM; origin only
	originPubFile = "origin.pub" // its public key, PKIX PEM; edges and receivers
	masterKeyFile = "master.key" // the event's master key, hex; origin and subscribers
)

func runKeys(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("keys", "Generate an event's keys into a directory: the origin's Ed25519 signing key ("+originKeyFile+", "+originPubFile+")\nand the master key subscribers get ("+masterKeyFile+"). Private files are written 0600.", stdout)
	dir := fs.String("dir", "embargo-keys", "directory to write the keys to (created if missing)")
	force := fs.Bool("force", false, "overwrite existing key files")
	if err := parse(fs, args); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	master := make([]byte, seal.MasterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return err
	}
	privPEM, err := pki.EncodeEd25519(priv)
	if err != nil {
		return err
	}
	pubPEM, err := seal.EncodePublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{originKeyFile, privPEM, 0o600},
		{originPubFile, pubPEM, 0o644},
		{masterKeyFile, []byte(hex.EncodeToString(master) + "\n"), 0o600},
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	for _, f := range files {
		path := filepath.Join(*dir, f.name)
		if err := writeFile(path, f.data, flags, f.mode); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists (use -force to overwrite)", path)
			}
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s, %s and %s in %s (key id %x)\n", originKeyFile, originPubFile, masterKeyFile, *dir, seal.KeyID(pub))
	return nil
}

func writeFile(path string, data []byte, flags int, mode os.FileMode) error {
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// readKey reads a PEM key file with parse, naming the file in errors; read
// is os.ReadFile, or keyfile.Read for a secret.
func readKey[K any](path string, read func(string) ([]byte, error), parse func([]byte) (K, error)) (K, error) {
	var zero K
	data, err := read(path)
	if err != nil {
		return zero, err
	}
	k, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readOriginKey(path string) (ed25519.PrivateKey, error) {
	return readKey(path, keyfile.Read, pki.ParseEd25519)
}

func readOriginPub(path string) (ed25519.PublicKey, error) { return device.ReadOriginKey(path) }

func readMasterKey(path string) ([]byte, error) { return device.ReadMasterKey(path) }
