package keyserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/internal/pki"
)

// maxSPEKERequest bounds a SPEKE request body: a request for the most
// periods a CPIX document may carry is well under it.
const maxSPEKERequest = 1 << 20

// speke answers an encryptor's SPEKE v2 request (PROTOCOL.md §13): the
// ContentKeyPeriod@index is the stream's period, the encryptor's KIDs are
// bound to it if it is not yet issued, and the answer is all the periods
// asked for or a refusal naming the first that cannot be answered.
func (h *Handler) speke(w http.ResponseWriter, r *http.Request) {
	stream, ok := h.caller(w, r, pki.RolePackager)
	if !ok {
		return
	}
	ev := h.cfg.Issuer.Event(stream)
	if ev == nil || ev.Resources {
		h.fail(w, r, http.StatusNotFound, "not-found", fmt.Errorf("%w: stream %d (no such stream, or one of published resources)", keystore.ErrNotFound, stream))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSPEKERequest))
	if err != nil {
		h.fail(w, r, http.StatusRequestEntityTooLarge, "bad-request", fmt.Errorf("SPEKE request over %d bytes", maxSPEKERequest))
		return
	}
	version := r.Header.Get("X-Speke-Version")
	req, err := cpix.ParseSPEKERequest(body, version)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad-request", err)
		return
	}
	want := max(ev.Keys, 1)
	for _, p := range req.Periods {
		if len(p.Keys) != want {
			h.fail(w, r, http.StatusConflict, "speke-refused", fmt.Errorf("period index %d: %d key(s) asked for; stream %d has %d per period (1: all tracks, 2: video and audio)", p.Index, len(p.Keys), stream, want))
			return
		}
	}
	length := int64(ev.Schedule.Period)
	pk := make([]cpix.PeriodKeys, len(req.Periods))
	for i, p := range req.Periods {
		kids := make([][16]byte, want)
		for _, k := range p.Keys {
			kids[max(0, int(k.Track)-int(cpix.TrackVideo))] = k.KID
		}
		per, err := h.cfg.Issuer.PeriodWithKIDs(stream, p.Index, kids)
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, ErrKIDConflict):
				code = http.StatusConflict
			case errors.Is(err, ErrTooFarAhead):
				code = http.StatusUnprocessableEntity
			case errors.Is(err, keystore.ErrNotFound):
				code = http.StatusGone
			}
			h.fail(w, r, code, "speke-refused", err)
			return
		}
		b := per.Bundle
		pk[i] = cpix.PeriodKeys{Stream: stream, Period: p.Index, Start: b.PresentAt, End: b.PresentAt + length, ReleaseAt: b.ReleaseAt, Keys: per.Keys}
	}
	doc, err := cpix.EncodeSPEKEResponse(req, pk)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "error", err)
		return
	}
	h.count("speke")
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("X-Speke-Version", version)
	w.Header().Set("X-Speke-User-Agent", "embargo")
	w.Write(doc)
}
