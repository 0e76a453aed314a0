package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/engine/keystore"
)

// assertNoSecrets fails t if any of outputs holds a secret of the lab: the
// licence token, a TLS private key in certs, or anything the origin keeps
// in its state directory — its signing key, the master keys, any period's
// content keys — in hex or base64.
func assertNoSecrets(t *testing.T, state, certs, token string, outputs map[string]string) {
	t.Helper()
	secrets := map[string][]byte{"licence token": []byte(token)}
	keys, _ := filepath.Glob(filepath.Join(certs, "*", "*.key"))
	for _, path := range keys {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode(data); b != nil {
			secrets[filepath.Base(path)] = b.Bytes
		}
	}
	store, err := keystore.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := store.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets["origin signing key"] = signer.Seed()
	streams, err := store.Events()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		ev, err := store.Event(s)
		if err != nil {
			t.Fatal(err)
		}
		secrets["master key"] = ev.Master
	}
	n := 0
	err = filepath.WalkDir(state, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(path)) != "periods" {
			return err
		}
		var p keystore.Period
		data, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(data, &p)
		}
		for _, k := range p.Keys {
			n++
			secrets[fmt.Sprintf("content key %d (%s)", n, path)] = k.Key[:]
		}
		return err
	})
	if err != nil || n == 0 {
		t.Fatalf("content keys in %s: %d, %v", state, n, err)
	}
	if len(keys) != 5 {
		t.Fatalf("found %d TLS keys in %s, want the CA's and four roles'", len(keys), certs)
	}
	if len(secrets) < 6 {
		t.Fatalf("found only %d secrets to look for", len(secrets))
	}
	for what, secret := range secrets {
		if len(secret) < 8 {
			t.Fatalf("%s: %d bytes is too short to search for", what, len(secret))
		}
		forms := []string{hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret)),
			base64.StdEncoding.EncodeToString(secret)[:len(secret)*4/3-4], base64.RawURLEncoding.EncodeToString(secret)[:len(secret)*4/3-4]}
		if what == "licence token" {
			forms = append(forms, token)
		}
		for name, out := range outputs {
			for _, f := range forms {
				if strings.Contains(out, f) {
					t.Errorf("%s holds the %s", name, what)
				}
			}
		}
	}
}
