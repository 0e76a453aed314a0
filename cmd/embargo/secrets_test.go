package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/internal/keyfile"
)

// TestOriginPortInUse: an origin whose address is taken fails with that
// reason before it creates any state or makes any token.
func TestOriginPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	state := filepath.Join(t.TempDir(), "state")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"origin", "-listen", ln.Addr().String(), "-state", state, "-assume-synced", "1ms", "-log", "error"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "-listen "+ln.Addr().String()+": address already in use (is another instance running? choose another address)") {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory created before the listen failed: %v", err)
	}
	if strings.Contains(out.String(), "token") {
		t.Errorf("token made before the listen failed: %s", out.String())
	}
}

// TestSecretsStaySecret: a key file open to others is refused with the fix;
// the master key given in place of its file is not echoed; the origin's
// generated licence token goes to a 0600 file, never to stdout.
func TestSecretsStaySecret(t *testing.T) {
	t.Setenv(keyfile.AllowEnv, "")
	dir := filepath.Join(t.TempDir(), "keys")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"keys", "-dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("keys: %s", errb.String())
	}
	master := filepath.Join(dir, masterKeyFile)
	if err := os.Chmod(master, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	code := run(context.Background(), []string{"recv", "-pub", filepath.Join(dir, originPubFile), "-master", master}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "open to group or others (mode 0644); fix: chmod 600 "+master) {
		t.Fatalf("open master key: exit %d: %s", code, errb.String())
	}
	os.Chmod(master, 0o600)

	secret := strings.Repeat("6b", 32)
	errb.Reset()
	code = run(context.Background(), []string{"recv", "-pub", filepath.Join(dir, originPubFile), "-master", secret}, &out, &errb)
	if code != 1 || strings.Contains(errb.String(), secret) || !strings.Contains(errb.String(), "not the key itself") {
		t.Fatalf("master key as a flag value: exit %d: %s", code, errb.String())
	}

	var tokens bytes.Buffer
	generated := filepath.Join(t.TempDir(), generatedTokenFile)
	got, err := loadTokens("", generated, &tokens)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	fi, err := os.Stat(generated)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(generated)
	token := strings.TrimSpace(string(data))
	if _, ok := got[token]; !ok || strings.Contains(tokens.String(), token) || !strings.Contains(tokens.String(), generated) {
		t.Fatalf("token %q, stdout %q", token, tokens.String())
	}
}

// TestCertsKeepCAApart: each role's directory from 'embargo certs' holds
// the CA's certificate and that role's own certificate and key, nothing
// else — above all not the CA's key, with which an edge could mint a
// packager certificate and fetch content keys a lead early.
func TestCertsKeepCAApart(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"certs", "-dir", dir}, &out, &out); code != 0 {
		t.Fatalf("certs: %s", out.String())
	}
	for _, role := range []string{"origin", "edge", "packager", "publisher", "ca"} {
		entries, err := os.ReadDir(filepath.Join(dir, role))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		want, key := []string{"ca.pem", role + ".key", role + ".pem"}, role+".key"
		if role == "ca" {
			want = []string{"ca.key", "ca.pem"}
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s/ holds %v, want %v", role, names, want)
		}
		if err := keyfile.Check(filepath.Join(dir, role, key)); err != nil {
			t.Errorf("%s/%s: %v", role, key, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
		t.Errorf("no ca.pem for receivers: %v", err)
	}
	if keys, _ := filepath.Glob(filepath.Join(dir, "*.key")); len(keys) != 0 {
		t.Errorf("keys outside the role directories: %v", keys)
	}
}
