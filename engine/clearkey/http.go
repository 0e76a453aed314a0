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

// outcome is how a licence request ended; its string is the name in the
// handlers' Stats and in metrics.
type outcome uint8

const (
	outGranted      outcome = iota // licence sent
	outPreflight                   // CORS preflight answered
	outUnauthorized                // no or unknown bearer token
	outMethod                      // neither POST nor (proxy) OPTIONS
	outBadRequest                  // body is not a valid licence request
	outUnsupported                 // a persistent session type
	outTooLarge                    // body over MaxBodySize
	outUnknownKID                  // a key id the origin does not serve
	outUnavailable                 // no master key to give yet
	outNotReleased                 // waited MaxWait, a key id still not released
	outEvicted                     // released, but no longer held
	outCancelled                   // the client went away while waiting
	outBusy                        // too many requests already waiting
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	outGranted:      "granted",
	outPreflight:    "preflight",
	outUnauthorized: "unauthorized",
	outMethod:       "bad-method",
	outBadRequest:   "bad-request",
	outUnsupported:  "unsupported-type",
	outTooLarge:     "too-large",
	outUnknownKID:   "unknown-kid",
	outUnavailable:  "unavailable",
	outNotReleased:  "not-released",
	outEvicted:      "evicted",
	outCancelled:    "cancelled",
	outBusy:         "busy",
}

func (o outcome) String() string { return outcomeNames[o] }

// counters are atomic so that ServeHTTP counts without a lock.
type counters [numOutcomes]atomic.Uint64

func (c *counters) add(o outcome) { c[o].Add(1) }

func (c *counters) snapshot() map[string]uint64 {
	m := make(map[string]uint64, numOutcomes)
	for i := range c {
		if v := c[i].Load(); v > 0 {
			m[outcomeNames[i]] = v
		}
	}
	return m
}

// readBody reads at most MaxBodySize bytes, refusing a larger body before
// reading it when the client declared its length.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
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

// parseOutcome is the outcome and status for a request that did not parse.
func parseOutcome(err error) (outcome, int) {
	switch {
	case errors.Is(err, ErrTooLarge):
		return outTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrUnsupported):
		return outUnsupported, http.StatusBadRequest
	}
	return outBadRequest, http.StatusBadRequest
}

// errorBody is every error response's body: the outcome's name, and the
// key ids it concerns, so a player's logs say which key was not served.
type errorBody struct {
	Error string   `json:"error"`
	KIDs  []string `json:"kids,omitempty"`
}

func writeError(w http.ResponseWriter, status int, o outcome, kids [][wire.KIDLen]byte) {
	e := errorBody{Error: o.String()}
	for i := range kids {
		e.KIDs = append(e.KIDs, b64.EncodeToString(kids[i][:]))
	}
	b, _ := json.Marshal(e) // cannot fail: strings only
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	// Licences carry keys and errors are momentary: no cache may keep either.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(body)
}
