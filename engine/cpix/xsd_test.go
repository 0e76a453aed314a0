package cpix

import (
	"regexp"
	"strings"
	"testing"

	"github.com/embargo-live/embargo/engine/cpix/cpixtest"
)

// TestSchemaValid: every kind of document this package writes is valid
// against the CPIX 2.4 and 2.3.1 schemas: edge bundles, and packager keys
// with one key per period and with a video and an audio key.
func TestSchemaValid(t *testing.T) {
	_, cert := recipients(t)
	docs := map[string]func() ([]byte, error){
		"bundles":         func() ([]byte, error) { return EncodeBundles(testBundles(3), cert, WithContentID("match-1")) },
		"packager 1 key":  func() ([]byte, error) { return EncodePackagerKeys(testPeriodKeys(3, 1), cert) },
		"packager 2 keys": func() ([]byte, error) { return EncodePackagerKeys(testPeriodKeys(3, 2), cert, WithScheme("cbcs")) },
	}
	for name, enc := range docs {
		t.Run(name, func(t *testing.T) {
			doc, err := enc()
			if err != nil {
				t.Fatal(err)
			}
			cpixtest.Validate(t, doc)
		})
	}
}

// TestSchemaCatchesErrors: the check is not vacuous: a document with the
// attribute CPIX 2.4 refuses, or without a required one, fails it.
func TestSchemaCatchesErrors(t *testing.T) {
	_, cert := recipients(t)
	doc, err := EncodePackagerKeys(testPeriodKeys(1, 1), cert)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"DocumentKey@Algorithm":  strings.Replace(string(doc), "<DocumentKey>", `<DocumentKey Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc">`, 1),
		"ContentKey without kid": regexp.MustCompile(`<ContentKey kid="[^"]*"`).ReplaceAllString(string(doc), "<ContentKey"),
	} {
		if out, ok := cpixtest.Check(t, []byte(bad), "cpix-2.4.xsd"); ok {
			t.Errorf("%s: passed the 2.4 schema:\n%s", name, out)
		}
	}
}
