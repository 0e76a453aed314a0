package keyserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/cpix"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/seal"
)

// ServerConfig configures the HTTPS handler.
type ServerConfig struct {
	Issuer *Issuer
	// Viewers, when set, decides who may fetch the master-key licence: a
	// per-viewer JWT with an entitlement for the stream. Without it,
	// Tokens do: shared bearer tokens, each with the client's name for the
	// logs — a lab mode, since anyone holding one has every viewer's
	// entitlement.
	Viewers *Viewers
	Tokens  map[string]string
	// Groups, Edges and Licence go into the session description.
	Groups, Edges []string
	Licence       string
	// TokenLife is how long the subscription tokens issued with each
	// licence live (default DefaultTokenLife).
	TokenLife time.Duration
	Logger    *slog.Logger
}

// Handler serves the origin's HTTP API. Edges and packagers must present a
// client certificate from the configured CA whose role (OU) matches.
type Handler struct {
	cfg ServerConfig
	log *slog.Logger
	mux *http.ServeMux

	mu       sync.Mutex
	counts   map[string]uint64
	fetches  map[string]uint64 // bundle documents served, by edge certificate name
	licences map[uint32]*clearkey.MasterHandler
}

// NewHandler returns the origin's API:
//
//	GET  /v1/session                      the session description (JSON)
//	GET  /v1/streams/{stream}/bundles     release bundles, CPIX to the edge's certificate
//	GET  /v1/streams/{stream}/keys        content keys, CPIX to the packager's certificate
//	POST /v1/streams/{stream}/licence     the master key, with a bearer token
//	POST /v1/streams/{stream}/speke       SPEKE v2.0/2.1 key requests of a packager
//	POST /v1/streams/{stream}/resources   a publisher's resource, ?releaseAt=TAI ns
//
// bundles and keys take ?from=P, the first period wanted.
func NewHandler(cfg ServerConfig) *Handler {
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), counts: map[string]uint64{}, fetches: map[string]uint64{}, licences: map[uint32]*clearkey.MasterHandler{}}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("GET /v1/session", h.session)
	h.mux.HandleFunc("GET /v1/streams/{stream}/bundles", h.bundles)
	h.mux.HandleFunc("GET /v1/streams/{stream}/keys", h.keys)
	h.mux.HandleFunc("POST /v1/streams/{stream}/licence", h.licence)
	h.mux.HandleFunc("POST /v1/streams/{stream}/speke", h.speke)
	h.mux.HandleFunc("POST /v1/streams/{stream}/resources", h.publishResource)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Counts returns how many requests ended in each outcome.
func (h *Handler) Counts() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]uint64, len(h.counts))
	for k, v := range h.counts {
		out[k] = v
	}
	return out
}

// LicenceStats returns how many master-key licence requests ended in each
// clearkey outcome ("granted", "expired", "not-entitled", …), over every
// stream.
func (h *Handler) LicenceStats() map[string]uint64 {
	h.mu.Lock()
	handlers := slices.Collect(maps.Values(h.licences))
	h.mu.Unlock()
	out := map[string]uint64{}
	for _, mh := range handlers {
		for k, n := range mh.Stats() {
			out[k] += n
		}
	}
	return out
}

// EdgeFetches returns how many bundle documents each edge was served, by
// the common name of its certificate.
func (h *Handler) EdgeFetches() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.fetches)
}

func (h *Handler) count(outcome string) {
	h.mu.Lock()
	h.counts[outcome]++
	h.mu.Unlock()
}

// fail answers an error and counts it.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, code int, outcome string, err error) {
	h.count(outcome)
	h.log.Warn("origin: refused", "path", r.URL.Path, "from", r.RemoteAddr, "status", code, "why", err)
	http.Error(w, err.Error(), code)
}

func (h *Handler) session(w http.ResponseWriter, r *http.Request) {
	pub := h.cfg.Issuer.PublicKey()
	id := seal.KeyID(pub)
	s := session.Session{
		OriginKey: base64.StdEncoding.EncodeToString(pub), KeyID: hex.EncodeToString(id[:]),
		Streams: h.cfg.Issuer.Streams(), Groups: h.cfg.Groups, Edges: h.cfg.Edges, Licence: h.cfg.Licence,
	}
	for _, st := range s.Streams {
		if ev := h.cfg.Issuer.Event(st); ev != nil {
			if ms := ev.Schedule.Lead.Milliseconds(); s.LeadMs == 0 || ms < s.LeadMs {
				s.LeadMs = ms
			}
		}
	}
	h.count("session")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}

// client returns the verified client certificate if it carries role.
func client(r *http.Request, role string) (*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil, errors.New("a verified client certificate is required")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if got := pki.Role(leaf); got != role {
		return nil, fmt.Errorf("client certificate role %q, want %q", got, role)
	}
	return leaf, nil
}

// caller checks the client certificate's role and reads the path's
// stream, answering the refusal itself when either fails.
func (h *Handler) caller(w http.ResponseWriter, r *http.Request, role string) (uint32, bool) {
	if _, err := client(r, role); err != nil {
		h.fail(w, r, http.StatusForbidden, "forbidden", err)
		return 0, false
	}
	s, err := strconv.ParseUint(r.PathValue("stream"), 10, 32)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad-request", fmt.Errorf("stream: %w", err))
		return 0, false
	}
	return uint32(s), true
}

func streamAndFrom(r *http.Request) (uint32, uint64, error) {
	s, err := strconv.ParseUint(r.PathValue("stream"), 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("stream: %w", err)
	}
	var from uint64
	if f := r.URL.Query().Get("from"); f != "" {
		if from, err = strconv.ParseUint(f, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("from: %w", err)
		}
	}
	return uint32(s), from, nil
}

func (h *Handler) window(w http.ResponseWriter, r *http.Request, role string) (*x509.Certificate, []*keystore.Period, bool) {
	cert, err := client(r, role)
	if err != nil {
		h.fail(w, r, http.StatusForbidden, "forbidden", err)
		return nil, nil, false
	}
	stream, from, err := streamAndFrom(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad-request", err)
		return nil, nil, false
	}
	periods, err := h.cfg.Issuer.Window(stream, from)
	if errors.Is(err, keystore.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "not-found", err)
		return nil, nil, false
	}
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "error", err)
		return nil, nil, false
	}
	if len(periods) == 0 {
		// Nothing new since from: a CPIX document cannot be empty.
		h.count("nothing-new")
		w.WriteHeader(http.StatusNoContent)
		return nil, nil, false
	}
	return cert, periods, true
}

func (h *Handler) bundles(w http.ResponseWriter, r *http.Request) {
	cert, periods, ok := h.window(w, r, pki.RoleEdge)
	if !ok {
		return
	}
	bs := make([]*bundle.Bundle, len(periods))
	for i, p := range periods {
		bs[i] = p.Bundle
	}
	doc, err := cpix.EncodeBundles(bs, cert)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "error", err)
		return
	}
	h.count("bundles")
	h.mu.Lock()
	h.fetches[cert.Subject.CommonName]++
	h.mu.Unlock()
	h.log.Debug("origin: bundles", "edge", cert.Subject.CommonName, "periods", len(bs))
	w.Header().Set("Content-Type", "application/xml")
	w.Write(doc)
}

func (h *Handler) keys(w http.ResponseWriter, r *http.Request) {
	cert, periods, ok := h.window(w, r, pki.RolePackager)
	if !ok {
		return
	}
	if ev := h.cfg.Issuer.Event(periods[0].Bundle.Stream); ev.Resources {
		h.fail(w, r, http.StatusNotFound, "not-found", fmt.Errorf("stream %d carries published resources, not content keys", ev.Stream))
		return
	}
	// A period's keys encrypt the media presented from its presentAt until
	// the next period's.
	pk := make([]cpix.PeriodKeys, len(periods))
	for i, p := range periods {
		length := int64(h.cfg.Issuer.Event(p.Bundle.Stream).Schedule.Period)
		pk[i] = cpix.PeriodKeys{Stream: p.Bundle.Stream, Period: p.Bundle.Period, Start: p.Bundle.PresentAt, End: p.Bundle.PresentAt + length,
			ReleaseAt: p.Bundle.ReleaseAt, Keys: p.Keys}
	}
	doc, err := cpix.EncodePackagerKeys(pk, cert)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "error", err)
		return
	}
	h.count("keys")
	w.Header().Set("Content-Type", "application/xml")
	w.Write(doc)
}

// ServerTLS is the origin's TLS configuration: TLS 1.3, and client
// certificates verified against clientCAs when presented (licence and
// session requests come without one).
func ServerTLS(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    clientCAs,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
}
