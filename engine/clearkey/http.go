package clearkey

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/embargo-live/embargo/wire"
)

// Outcome is how a licence request ended, at the origin's MasterHandler
// or at a device's licence proxy; its String is its name in Stats, in
// metrics and in an error response's body.
type Outcome uint8

// The outcomes of a licence request.
const (
	Granted         Outcome = iota // licence sent
	Preflight                      // CORS preflight answered
	Unauthorized                   // no or unknown bearer token
	BadMethod                      // neither POST nor (proxy) OPTIONS
	BadRequest                     // body is not a valid licence request
	Unsupported                    // a persistent session type
	TooLarge                       // body over MaxBodySize
	UnknownKID                     // a key id the origin does not serve
	Unavailable                    // no master key to give yet
	NotReleased                    // waited MaxWait, a key id still not released
	Evicted                        // released, but no longer held
	Cancelled                      // the client went away while waiting
	Busy                           // too many requests already waiting
	ForbiddenOrigin                // (proxy) a web origin the operator did not list
	BadHost                        // (proxy) a Host header other than the proxy's own name (DNS rebinding)
	BadToken                       // a viewer credential that does not parse or verify
	Expired                        // a viewer credential past its expiry (or not yet valid)
	WrongAudience                  // a viewer credential for another audience
	WrongIssuer                    // a viewer credential from another issuer
	NotEntitled                    // a valid viewer credential without this stream
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	Granted:         "granted",
	Preflight:       "preflight",
	Unauthorized:    "unauthorized",
	BadMethod:       "bad-method",
	BadRequest:      "bad-request",
	Unsupported:     "unsupported-type",
	TooLarge:        "too-large",
	UnknownKID:      "unknown-kid",
	Unavailable:     "unavailable",
	NotReleased:     "not-released",
	Evicted:         "evicted",
	Cancelled:       "cancelled",
	Busy:            "busy",
	ForbiddenOrigin: "forbidden-origin",
	BadHost:         "bad-host",
	BadToken:        "bad-token",
	Expired:         "expired",
	WrongAudience:   "wrong-audience",
	WrongIssuer:     "wrong-issuer",
	NotEntitled:     "not-entitled",
}

func (o Outcome) String() string { return outcomeNames[o] }

// Counters count requests by Outcome. They are atomic so that a handler
// counts without a lock; the zero value is ready to use.
type Counters [numOutcomes]atomic.Uint64

// Add counts one request that ended in o.
func (c *Counters) Add(o Outcome) { c[o].Add(1) }

// Snapshot returns the non-zero counts by outcome name.
func (c *Counters) Snapshot() map[string]uint64 {
	m := make(map[string]uint64, numOutcomes)
	for i := range c {
		if v := c[i].Load(); v > 0 {
			m[outcomeNames[i]] = v
		}
	}
	return m
}

// ReadBody reads a licence request's body, at most MaxBodySize bytes,
// refusing a larger body (ErrTooLarge) before reading it when the client
// declared its length; any other failure wraps ErrMalformed.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBodySize {
		return nil, ErrTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, ErrTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %v", ErrMalformed, err)
	}
	return b, nil
}

// Refusal is the outcome and HTTP status that answer a request whose body
// ReadBody or ParseRequest refused with err.
func Refusal(err error) (Outcome, int) {
	switch {
	case errors.Is(err, ErrTooLarge):
		return TooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnsupported):
		return Unsupported, http.StatusBadRequest
	}
	return BadRequest, http.StatusBadRequest
}

// errorBody is every error response's body: the outcome's name, and the
// key ids it concerns, so a player's logs say which key was not served.
type errorBody struct {
	Error string   `json:"error"`
	KIDs  []string `json:"kids,omitempty"`
}

// WriteError answers status with a JSON body naming the outcome and, in
// base64url, the key ids it concerns.
func WriteError(w http.ResponseWriter, status int, o Outcome, kids [][wire.KIDLen]byte) {
	e := errorBody{Error: o.String()}
	for i := range kids {
		e.KIDs = append(e.KIDs, b64.EncodeToString(kids[i][:]))
	}
	b, _ := json.Marshal(e) // cannot fail: strings only
	WriteJSON(w, status, b)
}

// WriteJSON answers status with a JSON body that no cache may keep.
func WriteJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	// Licences carry keys and errors are momentary: no cache may keep either.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}
