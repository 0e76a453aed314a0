package keyserver_test

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/embargo-live/embargo/engine/keyserver"
)

// FuzzParsePublish: a submission is refused with ErrRequest or
// ErrOversized, or accepted with its instant spelled canonically and its
// bytes as sent, within the size limit.
func FuzzParsePublish(f *testing.F) {
	f.Add("1800000000000000000", []byte(`{"odds":[1.85,3.4]}`))
	f.Add("0", []byte{0})
	f.Add("-1", []byte("x"))
	f.Add("01", []byte("x"))
	f.Add("9223372036854775808", []byte("x"))
	f.Add("1", []byte{})
	f.Fuzz(func(t *testing.T, releaseAt string, body []byte) {
		req, err := keyserver.ParsePublish(releaseAt, body)
		if err != nil {
			if req != nil || !errors.Is(err, keyserver.ErrRequest) && !errors.Is(err, keyserver.ErrOversized) {
				t.Fatalf("%v with %v", err, req)
			}
			return
		}
		if strconv.FormatInt(req.ReleaseAt, 10) != releaseAt || req.ReleaseAt < 0 || !bytes.Equal(req.Payload, body) || len(body) < 1 || len(body) > keyserver.MaxResource {
			t.Fatalf("accepted %q, %d bytes as %+v", releaseAt, len(body), req)
		}
	})
}
