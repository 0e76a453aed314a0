package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/seal"
)

// Certificate files in a certs directory (see 'embargo certs').
const (
	caFile       = "ca"
	originCert   = "origin"
	edgeCert     = "edge"
	packagerCert = "packager"
)

func runCerts(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("certs", "Make a lab certificate authority and the certificates mutual TLS needs: the origin's server\ncertificate, an edge's and a packager's client certificates (RSA: CPIX wraps keys to them).", stdout)
	dir := fs.String("dir", "embargo-certs", "directory to write ca, origin, edge and packager .pem/.key to")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated names and addresses the origin certificate is for")
	validity := fs.Duration("validity", 90*24*time.Hour, "certificate lifetime")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ca, err := pki.NewCA("embargo lab CA", *validity)
	if err != nil {
		return err
	}
	srv, err := ca.Server("embargo origin", strings.Split(*hosts, ","), *validity)
	if err != nil {
		return err
	}
	edge, err := ca.Client("embargo edge", pki.RoleEdge, *validity)
	if err != nil {
		return err
	}
	pkg, err := ca.Client("embargo packager", pki.RolePackager, *validity)
	if err != nil {
		return err
	}
	if err := errors.Join(ca.Write(*dir, caFile), srv.Write(*dir, originCert), edge.Write(*dir, edgeCert), pkg.Write(*dir, packagerCert)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote ca, origin, edge and packager certificates and keys in %s\n", *dir)
	return nil
}

func runOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("origin", `Run the origin service: issue each stream's key periods ahead of time into a durable state
directory, and serve over HTTPS release bundles to edges and content keys to packagers (CPIX,
encrypted to their client certificates), the master key to bearers of a token (a ClearKey-shaped
licence), and a session description receivers configure themselves from.`, stdout)
	state := fs.String("state", "embargo-origin", "state directory (created 0700): signing key, events, every issued period")
	certs := fs.String("certs", "embargo-certs", "directory with ca, origin certificates (see 'embargo certs')")
	listen := fs.String("listen", "127.0.0.1:8443", "HTTPS address")
	streams := streamsFlag{1}
	fs.Var(&streams, "streams", "comma-separated stream ids; a stream not yet in the state directory is created")
	period := fs.Duration("period", 2*time.Second, "key period of new streams")
	lead := fs.Duration("lead", 4*time.Second, "announce lead of new streams")
	present := fs.Duration("present", 2*time.Second, "presentAt − releaseAt of new streams")
	keys := fs.Int("keys", 2, "content keys per period of new streams")
	tokenFile := fs.String("tokens", "", "file of licence bearer tokens, one 'token name' per line (default: generate one and print it)")
	groups, edges := groupsFlag(), edgesFlag()
	fs.Var(groups, "session-group", "a multicast group receivers should join, for the session description (repeatable)")
	fs.Var(edges, "session-edge", "a unicast edge host:port receivers should subscribe to (repeatable)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics (periods issued, bundle fetches per edge, licences, requests by outcome), /healthz and /readyz on this address, e.g. 127.0.0.1:9170")
	role := addRoleFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, clock, err := role.open(stderr, "periods are issued by its best estimate, which may be off")
	if err != nil {
		return err
	}
	store, err := keystore.Open(*state)
	if err != nil {
		return err
	}
	issuer, err := keyserver.NewIssuer(store, clock, log)
	if err != nil {
		return err
	}
	for _, s := range streams {
		if issuer.Event(s) != nil {
			continue
		}
		master := make([]byte, seal.MasterKeyLen)
		if _, err := rand.Read(master); err != nil {
			return err
		}
		ev := &keystore.Event{Stream: s, Master: master, Keys: *keys,
			Schedule: origin.Schedule{Period: *period, Lead: *lead, PresentDelay: *present}}
		if err := issuer.AddEvent(ev); err != nil {
			return err
		}
		log.Info("origin: created stream", "stream", s, "period", *period)
	}
	tokens, err := loadTokens(*tokenFile, stdout)
	if err != nil {
		return err
	}
	srvCert, err := pki.Load(*certs, originCert)
	if err != nil {
		return err
	}
	cas, err := pki.LoadPool(filepath.Join(*certs, caFile+".pem"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	base := "https://" + ln.Addr().String()
	h := keyserver.NewHandler(keyserver.ServerConfig{
		Issuer: issuer, Tokens: tokens, Groups: groups.strings(), Edges: edges.strings(),
		Licence: base + "/v1/streams/{stream}/licence", Logger: log,
	})
	srv := &http.Server{Handler: h, TLSConfig: keyserver.ServerTLS(srvCert.TLS(), cas),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	// The issuer and the HTTPS server run under one errgroup: an error in
	// either ends the origin with that error.
	g, gctx := errgroup.WithContext(ctx)
	if *metricsAddr != "" {
		reg := prometheus.NewRegistry()
		metrics.RegisterProcess(reg, "origin")
		metrics.RegisterClock(reg, clock)
		metrics.CounterFunc(reg, "origin", "periods_issued_total", "Periods issued and stored by this process.", issuer.Issued)
		metrics.CounterFunc(reg, "origin", "licences_total", "Master-key licences granted.", func() uint64 { return h.Counts()["licence"] })
		metrics.CountersByLabel(reg, "origin", "bundle_fetches_total", "Bundle documents served, by edge certificate.", "edge", h.EdgeFetches)
		metrics.CountersByLabel(reg, "origin", "requests_total", "API requests by outcome (bundles, nothing-new, keys, session, licence, or why refused).", "outcome", h.Counts)
		at, err := serveHTTP(gctx, g, *metricsAddr, metrics.Handler(reg, clock), 30*time.Second)
		if err != nil {
			return fmt.Errorf("-metrics: %w", err)
		}
		log.Info("metrics", "addr", "http://"+at+"/metrics", "liveness", "/healthz", "readiness", "/readyz")
	}
	g.Go(func() error { return ignoreCanceled(issuer.Run(gctx, 100*time.Millisecond)) })
	g.Go(func() error {
		<-gctx.Done()
		shut, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		return srv.Shutdown(shut)
	})
	g.Go(func() error {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", base, err)
		}
		return nil
	})
	id := seal.KeyID(issuer.PublicKey())
	fmt.Fprintf(stdout, "origin: serving %s (session %s/v1/session), signing key id %s, streams %v, state %s\n", base, base, hex.EncodeToString(id[:]), issuer.Streams(), *state)
	return g.Wait()
}

// loadTokens reads 'token name' lines, or makes one token and prints it.
func loadTokens(path string, stdout io.Writer) (map[string]string, error) {
	if path == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		t := hex.EncodeToString(b)
		fmt.Fprintf(stdout, "origin: licence token for this run: %s\n", t)
		return map[string]string{t: "generated"}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case len(f) == 1:
			out[f[0]] = "unnamed"
		default:
			out[f[0]] = f[1]
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no tokens", path)
	}
	return out, nil
}
