package keyserver

import (
	"cmp"
	"fmt"
	"net/http"
	"strconv"

	"github.com/embargo-live/embargo/engine/clearkey"
)

// licence serves the stream's master key to a viewer entitled to it (a
// JWT, ServerConfig.Viewers) or to a bearer of a configured token, as a
// ClearKey-shaped licence (package clearkey).
func (h *Handler) licence(w http.ResponseWriter, r *http.Request) {
	s, err := strconv.ParseUint(r.PathValue("stream"), 10, 32)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad-request", fmt.Errorf("stream: %w", err))
		return
	}
	mh, err := h.masterHandler(uint32(s))
	if err != nil {
		h.fail(w, r, http.StatusNotFound, "not-found", err)
		return
	}
	h.count("licence")
	mh.ServeHTTP(w, r)
}

// masterHandler returns the stream's licence handler, made on first use.
func (h *Handler) masterHandler(stream uint32) (*clearkey.MasterHandler, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if mh := h.licences[stream]; mh != nil {
		return mh, nil
	}
	ev := h.cfg.Issuer.Event(stream)
	if ev == nil {
		return nil, fmt.Errorf("no event for stream %d", stream)
	}
	master := ev.Master
	life := cmp.Or(h.cfg.TokenLife, DefaultTokenLife)
	mc := clearkey.MasterConfig{Tokens: h.cfg.Tokens, Master: func() []byte { return master },
		SubscriptionToken: func(viewer string) ([]byte, error) { return h.cfg.Issuer.SubscriptionToken(life, viewer) }, Logger: h.log}
	if v := h.cfg.Viewers; v != nil {
		mc.Tokens = nil
		mc.Authorize = func(r *http.Request) (string, clearkey.Outcome, bool) { return v.Authorize(r, stream) }
	}
	mh, err := clearkey.NewMasterHandler(mc)
	if err != nil {
		return nil, err
	}
	h.licences[stream] = mh
	return mh, nil
}
