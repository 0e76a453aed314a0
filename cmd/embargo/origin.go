package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/internal/keyfile"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// Certificate files in a certs directory (see 'embargo certs').
const (
	caFile        = "ca"
	originCert    = "origin"
	edgeCert      = "edge"
	packagerCert  = "packager"
	publisherCert = "publisher"
)

func runCerts(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("certs", `Make a lab certificate authority and the certificates mutual TLS needs: the origin's server
certificate, an edge's, a packager's and a publisher's client certificates (RSA-3072: CPIX wraps
keys to them). Each role gets its own directory holding only its own key and the CA's certificate
(DIR/origin, DIR/edge, DIR/packager, DIR/publisher), receivers DIR/ca.pem, and the CA's key stays
in DIR/ca: an edge given the CA's key could mint a packager certificate and fetch content keys
a lead early.`, stdout)
	dir := fs.String("dir", "embargo-certs", "directory to make the role directories in")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated names and addresses the origin certificate is for")
	validity := fs.Duration("validity", 90*24*time.Hour, "certificate lifetime")
	if err := parse(fs, args); err != nil {
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
	certs := map[string]*pki.Cert{originCert: srv}
	for name, role := range map[string]string{edgeCert: pki.RoleEdge, packagerCert: pki.RolePackager, publisherCert: pki.RolePublisher} {
		if certs[name], err = ca.Client("embargo "+name, role, *validity); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(*dir, caFile), 0o700); err != nil {
		return err
	}
	errs := []error{ca.Write(filepath.Join(*dir, caFile), caFile), ca.WriteCertificate(filepath.Join(*dir, caFile+".pem"))}
	for name, c := range certs {
		sub := filepath.Join(*dir, name)
		errs = append(errs, os.MkdirAll(sub, 0o700), c.Write(sub, name), ca.WriteCertificate(filepath.Join(sub, caFile+".pem")))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote in %[1]s: origin/, edge/, packager/, publisher/ (each: ca.pem and its own certificate and key), ca.pem for receivers, and the CA's key in ca/ (keep it off every host)\n", *dir)
	return nil
}

func runOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newRoleFlags("origin", `Run the origin service: issue each stream's key periods ahead of time into a durable state
directory, and serve over HTTPS release bundles to edges and content keys to packagers (CPIX 2.4,
encrypted to their client certificates; SPEKE v2.0/2.1 at /v1/streams/{stream}/speke), resources
publishers submit (embargo publish) on -resource-streams, the master key to bearers of a token (a
ClearKey-shaped licence), and a session description receivers configure themselves from.`, stdout)
	state := fs.String("state", "embargo-origin", "state directory (created 0700): signing key, events, every issued period")
	certs := fs.String("certs", "embargo-certs/origin", "directory with ca.pem and the origin's origin.pem/origin.key (see 'embargo certs')")
	listen := fs.String("listen", "127.0.0.1:8443", "HTTPS address")
	streams := streamsFlag{1}
	fs.Var(&streams, "streams", "comma-separated stream ids; a stream not yet in the state directory is created")
	var resourceStreams streamsFlag
	fs.Var(&resourceStreams, "resource-streams", "comma-separated ids of streams of published resources (embargo publish); created like -streams, with -lead and -present")
	period := fs.Duration("period", 2*time.Second, "key period of new streams")
	lead := fs.Duration("lead", origin.DefaultLead, fmt.Sprintf("announce lead of new streams: when a period's keys exist for packagers and its bundle for edges, before its release; at least %v, at most %d periods (default: %v, or %d periods if shorter)", origin.MinLead, wire.MaxAnnounceLead, origin.DefaultLead, wire.MaxAnnounceLead))
	present := fs.Duration("present", 2*time.Second, "presentAt − releaseAt of new streams")
	keys := fs.Int("keys", 2, "content keys per period of new streams: 1 (all tracks) or 2 (video, audio)")
	tokenFile := fs.String("tokens", "", "lab mode: file of shared licence bearer tokens, one 'token name' per line, mode 0600 (default without -jwks: generate one into the state directory's "+generatedTokenFile+")")
	jwks := fs.String("jwks", "", "per-viewer entitlement: the viewer service's published JWK Set (a file, or an https:// URL fetched and cached); licences then need a JWT from that service, not a shared token")
	jwtIssuer := fs.String("jwt-issuer", "", "with -jwks: the viewer tokens' issuer (iss)")
	jwtAudience := fs.String("jwt-audience", "embargo", "with -jwks: the audience (aud) viewer tokens must name")
	jwtClaim := fs.String("jwt-claim", keyserver.DefaultClaim, "with -jwks: the claim listing the stream ids a viewer is entitled to")
	groups, edges := groupsFlag(), edgesFlag()
	fs.Var(groups, "session-group", "a multicast group receivers should join, for the session description (repeatable)")
	fs.Var(edges, "session-edge", "a unicast edge host:port receivers should subscribe to (repeatable)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics (periods issued, bundle fetches per edge, licences, requests by outcome), /healthz and /readyz on this address, e.g. 127.0.0.1:9170")
	stores := addStoreFlags(fs)
	role := addRoleFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if stores.shared() && *jwks == "" && *tokenFile == "" {
		return usageError{"-store etcd needs -jwks (or, in a lab, -tokens): a token one replica generated would not open another"}
	}
	if !flagSet(fs, "lead") {
		*lead = min(*lead, wire.MaxAnnounceLead**period)
	}
	if err := checkLead(*lead, *period); err != nil {
		return err
	}
	// Who gets licences is decided before anything is created or listened on.
	var viewers *keyserver.Viewers
	if *jwks != "" {
		if *tokenFile != "" {
			return usageError{"-tokens and -jwks both decide who gets licences: shared tokens would give anyone every viewer's entitlement; keep -jwks"}
		}
		var err error
		if viewers, err = viewerEntitlement(*jwks, *jwtIssuer, *jwtAudience, *jwtClaim); err != nil {
			return err
		}
	}
	log, clock, err := role.open(stderr, "periods are issued by its best estimate, which may be off")
	if err != nil {
		return err
	}
	// Listen first: a port in use must fail before any state is created or
	// any token made.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return listenError("-listen", *listen, err)
	}
	defer ln.Close()
	store, closeStore, err := stores.open(*state)
	if err != nil {
		return err
	}
	defer closeStore()
	if strings.Contains(*stores.store, "http://") {
		log.Warn("origin: etcd over plain http: the signing key and every master and content key cross the network in the clear; use https:// endpoints with -etcd-ca, -etcd-cert and -etcd-key")
	}
	issuer, err := keyserver.NewIssuer(store, clock, log)
	if err != nil {
		return err
	}
	given := func(name string) bool { return flagSet(fs, name) }
	want := keystore.Event{Keys: *keys, Schedule: origin.Schedule{Period: *period, Lead: *lead, PresentDelay: *present}}
	if err := ensureStreams(issuer, streams, resourceStreams, want, given, log); err != nil {
		return err
	}
	var tokens map[string]string
	if viewers != nil {
		log.Info("origin: licences by per-viewer entitlement", "jwks", *jwks, "issuer", *jwtIssuer, "audience", *jwtAudience, "claim", *jwtClaim)
	} else {
		if tokens, err = loadTokens(*tokenFile, filepath.Join(*state, generatedTokenFile), stdout); err != nil {
			return err
		}
		log.Warn("origin: licences by shared bearer token (lab mode): anyone holding one has every viewer's entitlement; use -jwks in production")
	}
	srvCert, err := pki.Load(*certs, originCert)
	if err != nil {
		return err
	}
	cas, err := pki.LoadPool(filepath.Join(*certs, caFile+".pem"))
	if err != nil {
		return err
	}
	base := "https://" + ln.Addr().String()
	h := keyserver.NewHandler(keyserver.ServerConfig{
		Issuer: issuer, Tokens: tokens, Viewers: viewers, Groups: groups.strings(), Edges: edges.strings(),
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
		metrics.CounterFunc(reg, "origin", "periods_lost_race_total", "Periods this process issued but another request or replica stored first (its keys stand).", issuer.Lost)
		metrics.CounterFunc(reg, "origin", "licences_total", "Master-key licences granted.", func() uint64 { return h.LicenceStats()["granted"] })
		metrics.CountersByLabel(reg, "origin", "licence_requests_total", "Master-key licence requests by outcome: granted, or why refused (unauthorized, bad-token, expired, wrong-audience, wrong-issuer, not-entitled, …).", "outcome", h.LicenceStats)
		metrics.CountersByLabel(reg, "origin", "bundle_fetches_total", "Bundle documents served, by edge certificate.", "edge", h.EdgeFetches)
		metrics.CountersByLabel(reg, "origin", "requests_total", "API requests by outcome (bundles, nothing-new, keys, session, licence, or why refused).", "outcome", h.Counts)
		at, err := serveHTTP(gctx, g, *metricsAddr, metrics.Handler(reg, clock, metrics.Check{Name: "store", Eval: issuer.StoreStatus}), 30*time.Second)
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
	notifySystemd(gctx, g, log, func() error { return nil })
	id := seal.KeyID(issuer.PublicKey())
	where := *state
	if stores.shared() {
		where = *stores.store
	}
	fmt.Fprintf(stdout, "origin: serving %s (session %s/v1/session), signing key id %s, streams %v, state %s\n", base, base, hex.EncodeToString(id[:]), issuer.Streams(), where)
	return g.Wait()
}

// checkLead refuses a lead the origin cannot serve, naming the flags.
func checkLead(lead, period time.Duration) error {
	if lead < origin.MinLead {
		return fmt.Errorf("-lead %v is below the minimum %v: edges poll every 500ms and need time to carousel each period before its release", lead, origin.MinLead)
	}
	if err := (origin.Schedule{Period: period, Lead: lead}).Check(); err != nil {
		return fmt.Errorf("-lead %v with -period %v: %w", lead, period, err)
	}
	return nil
}

// flagSet reports whether the command line set the named flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// viewerEntitlement checks licences against viewer JWTs from the service
// whose keys jwks publishes (a file, or an https URL).
func viewerEntitlement(jwks, issuer, audience, claim string) (*keyserver.Viewers, error) {
	if issuer == "" || audience == "" {
		return nil, usageError{"-jwks needs -jwt-issuer and -jwt-audience: a token from any issuer, for any service, would do"}
	}
	v := &keyserver.Viewers{Issuer: issuer, Audience: audience, Claim: claim}
	if strings.HasPrefix(jwks, "https://") {
		v.Keys = &keyserver.RemoteKeys{URL: jwks, Client: &http.Client{Timeout: 10 * time.Second}}
		return v, nil
	}
	if strings.Contains(jwks, "://") {
		return nil, usageError{fmt.Sprintf("-jwks %q: want a file or an https:// URL", jwks)}
	}
	keys, err := keyserver.ReadKeys(jwks)
	if err != nil {
		return nil, fmt.Errorf("-jwks: %w", err)
	}
	v.Keys = keys
	return v, nil
}

// generatedTokenFile is where an origin without -tokens keeps the licence
// token it made, in its state directory: a secret goes to a 0600 file, not
// to stdout, where a service manager would log it.
const generatedTokenFile = "licence.token"

// loadTokens reads 'token name' lines from path, or makes one token and
// writes it to generated (0600), saying where on stdout.
func loadTokens(path, generated string, stdout io.Writer) (map[string]string, error) {
	if path == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		t := hex.EncodeToString(b)
		if err := writeFile(generated, []byte(t+"\n"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "origin: licence token for this run written to %s (give it to recv -token-file)\n", generated)
		return map[string]string{t: "generated"}, nil
	}
	data, err := keyfile.Read(path)
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

// ensureStreams creates each stream the store does not hold yet, as want
// says (a resource stream without content keys), and warns of each flag
// given that a stored stream differs from (storedDiffers).
func ensureStreams(issuer *keyserver.Issuer, keyStreams, resourceStreams []uint32, want keystore.Event, given func(flag string) bool, log *slog.Logger) error {
	for _, s := range append(keyStreams[:len(keyStreams):len(keyStreams)], resourceStreams...) {
		resources := slices.Contains(resourceStreams, s)
		if ev := issuer.Event(s); ev != nil {
			storedDiffers(ev, want, resources, given, log)
			continue
		}
		master := make([]byte, seal.MasterKeyLen)
		if _, err := rand.Read(master); err != nil {
			return err
		}
		ev := &keystore.Event{Stream: s, Master: master, Keys: want.Keys, Resources: resources, Schedule: want.Schedule}
		if resources {
			ev.Keys = 0
		}
		if err := issuer.AddEvent(ev); errors.Is(err, keystore.ErrExists) {
			log.Info("origin: stream created by another replica; issuing it", "stream", s)
			if ev := issuer.Event(s); ev != nil {
				storedDiffers(ev, want, resources, given, log)
			}
			continue
		} else if err != nil {
			return err
		}
		log.Info("origin: created stream", "stream", s, "period", want.Schedule.Period, "resources", resources)
	}
	return nil
}

// storedDiffers warns, one line each, of the flags given that the stored
// stream ev differs from. A replica serves the stored event, never its
// flags: every replica and edge must agree on a stream's schedule and
// keys, and periods already issued fix them. It warns rather than
// refuses, so that a stale flag in one replica's unit cannot keep it from
// starting when it is needed (a failover); the warning names the stored
// value, the flag's and the fix.
func storedDiffers(ev *keystore.Event, want keystore.Event, resources bool, given func(flag string) bool, log *slog.Logger) {
	differs := func(flag string, stored, asked any) {
		log.Warn(fmt.Sprintf("origin: stream %d is stored with %s %v, not the %s %v given: it is served as stored, as every replica serves it; drop %s or set it to %v (a new schedule needs a new stream id)",
			ev.Stream, flag, stored, flag, asked, flag, stored))
	}
	if given("period") && ev.Schedule.Period != want.Schedule.Period {
		differs("-period", ev.Schedule.Period, want.Schedule.Period)
	}
	if given("lead") && ev.Schedule.Lead != want.Schedule.Lead {
		differs("-lead", ev.Schedule.Lead, want.Schedule.Lead)
	}
	if given("present") && ev.Schedule.PresentDelay != want.Schedule.PresentDelay {
		differs("-present", ev.Schedule.PresentDelay, want.Schedule.PresentDelay)
	}
	if given("keys") && !ev.Resources && ev.Keys != want.Keys {
		differs("-keys", ev.Keys, want.Keys)
	}
	if ev.Resources != resources && (given("streams") || given("resource-streams")) {
		kind := map[bool]string{false: "a stream of content keys (-streams)", true: "a stream of published resources (-resource-streams)"}
		log.Warn(fmt.Sprintf("origin: stream %d is stored as %s, not as %s: it is served as stored; list it under the other flag, or use a new stream id", ev.Stream, kind[ev.Resources], kind[resources]))
	}
}
