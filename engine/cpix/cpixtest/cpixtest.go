package cpixtest

import (
	"embed"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

//go:embed xsd/*.xsd
var schemaFS embed.FS

//go:embed speke/*.xml
var spekeFS embed.FS

// SPEKERequests are SPEKE v2 request documents written after the public
// SPEKE v2 specification's live examples, by file name: the X-Speke-Version
// each is for is in its name ("live-2.0-…", "live-2.1-…"). A document's
// "CERTIFICATE" placeholder takes the base64 DER of the encryptor's
// certificate.
func SPEKERequests() map[string][]byte {
	out := map[string][]byte{}
	files, _ := spekeFS.ReadDir("speke")
	for _, f := range files {
		data, _ := spekeFS.ReadFile("speke/" + f.Name())
		out[f.Name()] = data
	}
	return out
}

// Schemas are the CPIX schema files every document is checked against.
var Schemas = []string{"cpix-2.4.xsd", "cpix-2.3.1.xsd"}

// Xmllint returns the path of xmllint, or skips the test with the reason.
func Xmllint(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint not installed (Debian: apt-get install libxml2-utils): the CPIX schema check cannot run")
	}
	return path
}

// Check runs xmllint on doc against schema (one of Schemas), offline, and
// returns xmllint's report and whether the document is valid.
func Check(t testing.TB, doc []byte, schema string) (string, bool) {
	t.Helper()
	lint := Xmllint(t)
	dir := t.TempDir()
	files, err := schemaFS.ReadDir("xsd")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := schemaFS.ReadFile("xsd/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "doc.xml")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lint, "--noout", "--nonet", "--schema", filepath.Join(dir, schema), file).CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// Validate fails the test, with xmllint's words, unless doc is valid
// against every schema in Schemas.
func Validate(t testing.TB, doc []byte) {
	t.Helper()
	for _, xsd := range Schemas {
		if out, ok := Check(t, doc, xsd); !ok {
			t.Errorf("CPIX document not valid against %s:\n%s", xsd, out)
		}
	}
}
