package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/engine/session"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/engine/webedge"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newRoleFlags("edge", `Run an edge: carousel each key period's ANNOUNCE to the multicast groups from -lead before its
release, and send its RELEASE at releaseAt by the clock's earliest possible time (never early;
an unsynchronized clock holds the release and says so).

With -origin it fetches release bundles from the origin service over mutual TLS. Without it, it
runs an embedded origin from the keys in -keys (see 'embargo keys'): period p of every stream is
released at p × -period TAI. One embedded origin serves one edge; several edges need -origin.`, stdout)
	keys := fs.String("keys", "embargo-keys", "without -origin: run an embedded origin from "+originKeyFile+" and "+masterKeyFile+" in this directory")
	originURLs := &originsFlag{name: "origin"}
	fs.Var(originURLs, "origin", "fetch release bundles from this origin service (https://host:port) over mutual TLS; repeatable or comma-separated for replicas, failed over on no connection, a timeout or a 5xx")
	originTimeout := fs.Duration("origin-timeout", 0, fmt.Sprintf("with -origin: how long a request to an origin replica may take before the edge tries the next (default, with several replicas: half of what the origin's announce lead leaves after a poll interval, %v … %v; else, or until the origin says its lead, %v)", minOriginTimeout, defaultOriginTimeout, defaultOriginTimeout))
	certs := fs.String("certs", "embargo-certs/edge", "with -origin: directory with ca.pem and this edge's edge.pem/edge.key, and nothing else (see 'embargo certs')")
	groups := groupsFlag()
	fs.Var(groups, "group", groupHelp)
	streams := streamsFlag{1}
	fs.Var(&streams, "streams", "comma-separated stream ids to rotate keys for")
	period := fs.Duration("period", 2*time.Second, "key period length")
	lead := fs.Duration("lead", 2*time.Second, "announce lead: the carousel starts this long before each releaseAt")
	present := fs.Duration("present", 2*time.Second, "presentAt − releaseAt")
	rounds := fs.Int("rounds", edge.DefaultRounds, "carousel rounds of each ANNOUNCE")
	repeat := fs.Int("repeat", edge.DefaultRepeat, "copies of each RELEASE")
	spacing := fs.Duration("spacing", edge.DefaultSpacing, "time between RELEASE copies")
	id := fs.Uint("id", 1, "edge id stamped on RELEASEs")
	periods := fs.Int("periods", 0, "exit after releasing this many periods per stream (0: run until interrupted)")
	unicastAddr := fs.String("unicast", "", "also serve unicast subscribers on this address, e.g. [::]:7272, beside the multicast groups (default: multicast only)")
	browserAddr := fs.String("browser", "", "also serve web browsers over WebSocket on this address, e.g. 127.0.0.1:7373: every datagram as one binary message (see README, In the browser)")
	browserWT := fs.String("browser-wt", "", "also serve web browsers over WebTransport (HTTP/3, UDP) on this address, e.g. 127.0.0.1:7374: a RELEASE first as a datagram, everything else as frames on one stream per session")
	browserCert := fs.String("browser-cert", "", "the edge's certificate and key for browsers (PEM files, comma-separated: cert.pem,key.pem), read again when they change (a renewal, no restart): WebTransport's, and with -browser-tls WebSocket's; without it -browser-wt makes a self-signed ECDSA certificate valid 13 days, whose SHA-256 the edge logs for the page's serverCertificateHashes")
	browserTLS := fs.Bool("browser-tls", false, "with -browser and -browser-cert: serve WebSocket over TLS (wss://, what a page served over https may open); without it ws://, for a TLS proxy in front")
	browserMax := fs.Int("browser-max", webedge.DefaultMaxConns, "browser sessions held at once, WebSocket and WebTransport together (about 130 KB each over WebTransport); more are refused with 503")
	browserPerAddr := fs.Int("browser-max-per-address", webedge.DefaultMaxPerAddress, "browsers: most sessions from one IP address (a carrier's NAT may put many viewers behind one; behind a proxy all have its address: raise it to -browser-max)")
	browserPerPrefix := fs.Int("browser-max-per-prefix", webedge.DefaultMaxPerAddress, "browsers: most sessions from one IPv6 prefix of -ipv6-prefix bits")
	browserPerViewer := fs.Int("browser-max-per-viewer", webedge.DefaultMaxPerViewer, "with -require-tokens: most browser sessions whose subscription tokens name one viewer (a token copied from a page opens no more)")
	browserOrigins := fs.String("browser-origins", "", "with -browser: comma-separated page origins (host patterns, e.g. *.example.com) allowed besides the endpoint's own host")
	multicast := fs.Bool("multicast", true, "send to the multicast groups (-group, or the default group); -multicast=false with -unicast serves unicast subscribers only")
	senders := fs.Int("senders", 0, "unicast sender sockets and threads (default: one per core)")
	requireTokens := fs.Bool("require-tokens", false, "unicast and browsers: subscribe only receivers presenting a subscription token signed by the origin key (issued with each licence; a browser's in its URL, ?token=)")
	maxPerAddr := fs.Int("max-per-address", unicast.DefaultMaxPerAddress, "unicast: most subscriptions from one IP address")
	prefixBits := fs.Int("ipv6-prefix", unicast.DefaultPrefixBits, "unicast and browsers: IPv6 prefix length counted as one site for -max-per-prefix and -browser-max-per-prefix (and unicast's subscribe rate)")
	maxPerPrefix := fs.Int("max-per-prefix", unicast.DefaultMaxPerAddress, "unicast: most subscriptions from one IPv6 prefix of -ipv6-prefix bits")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics, /healthz (liveness) and /readyz (readiness: clock, senders, bundles ahead, unicast), each condition with its reason, on this address, e.g. 127.0.0.1:9171")
	rtPriority := fs.Int("rt-priority", ptp.DefaultPriority, "SCHED_FIFO priority of the release thread's last milliseconds before each instant and of the unicast fan-out's sender threads, where the process may (CAP_SYS_NICE); 0: normal priority")
	readyAhead := fs.Int("ready-ahead", 1, "/readyz: the unreleased periods of every stream the edge must hold to be ready")
	readyGrace := fs.Duration("ready-grace", time.Second, "/readyz: how long a stream may hold fewer than -ready-ahead periods after a release before the edge is not ready")
	role := addRoleFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, clock, err := role.open(stderr, "releases will be held until it is")
	if err != nil {
		return err
	}
	if *rtPriority != 0 {
		if err := ptp.ProbeRealtime(*rtPriority); errors.Is(err, ptp.ErrInvalidOption) {
			return flagConflict("-rt-priority %d: want 1…99, or 0 for normal priority", *rtPriority)
		} else if err != nil {
			log.Warn("release thread: SCHED_FIFO not permitted, spinning at normal priority (a busy machine may delay releases by milliseconds); grant CAP_SYS_NICE to fix", "err", err)
			*rtPriority = 0
		} else {
			log.Info("release thread: SCHED_FIFO", "priority", *rtPriority)
		}
	}
	// At real-time priority the Waiter takes over well before the instant:
	// the release loop's own timers fire at normal priority, late on a
	// busy machine.
	wakeHead := edge.DefaultWakeHead
	if *rtPriority != 0 {
		wakeHead = fifoWakeHead
	}
	if flagSet(fs, "origin-timeout") && *originTimeout <= 0 {
		return flagConflict("-origin-timeout %v: want > 0, or leave it unset to follow the origin's announce lead", *originTimeout)
	}
	var src bundleSource
	var pl *poller.Poller // nil with the embedded origin
	if len(originURLs.urls) > 0 {
		src, pl, err = remoteOrigin(originURLs.urls, *originTimeout, *certs, streams, clock, log)
	} else {
		src, err = embeddedOrigin(*keys, streams, origin.Schedule{Period: *period, Lead: *lead, PresentDelay: *present}, clock, log)
	}
	if err != nil {
		return err
	}
	switch {
	case !*multicast && *unicastAddr == "" && *browserAddr == "" && *browserWT == "":
		return flagConflict("-multicast=false needs -unicast or -browser: the edge would send nowhere")
	case *browserTLS && (*browserAddr == "" || *browserCert == ""):
		return flagConflict("-browser-tls serves -browser's WebSocket over TLS with -browser-cert's certificate: give both (browsers accept no self-signed certificate for wss://)")
	case !*multicast && len(groups.values) > 0:
		return flagConflict("-group and -multicast=false contradict each other: drop one")
	}
	var dests []edge.Sender
	if *multicast {
		for _, g := range groupsOrDefault(groups) {
			s, err := udp.NewSender(g)
			if err != nil {
				return err
			}
			defer s.Close()
			dests = append(dests, s)
			log.Info("sending", "group", g.String())
		}
	}
	var srv *unicast.Server
	if *unicastAddr != "" {
		listen, err := netip.ParseAddrPort(*unicastAddr)
		if err != nil {
			return fmt.Errorf("-unicast: %w", err)
		}
		sc := unicast.SessionConfig{Streams: streams, MaxPerAddress: *maxPerAddr, PrefixBits: *prefixBits, MaxPerPrefix: *maxPerPrefix}
		if *requireTokens {
			sc.Tokens = src.trusted
		}
		srv, err = unicast.NewServer(unicast.ServerConfig{
			Listen: listen, Senders: *senders, Priority: *rtPriority, Clock: clock, Logger: log, Sessions: sc,
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		dests = append(dests, srv)
	}
	var web *webedge.Server
	var webCert *webedge.Certificate // the browsers' TLS certificate; nil for ws:// only
	if *browserAddr != "" || *browserWT != "" {
		if webCert, err = browserCertificate(*browserCert, *browserWT, log); err != nil {
			return err
		}
		var origins []string
		if *browserOrigins != "" {
			origins = strings.Split(*browserOrigins, ",")
		}
		wc := webedge.Config{Streams: streams, Clock: clock, Logger: log, OriginPatterns: origins, MaxConns: *browserMax,
			MaxPerAddress: *browserPerAddr, MaxPerPrefix: *browserPerPrefix, PrefixBits: *prefixBits, MaxPerViewer: *browserPerViewer}
		if *requireTokens {
			wc.Tokens = src.trusted // browsers too: ?token= in the session URL
		}
		web, err = webedge.New(wc)
		if err != nil {
			return err
		}
		defer web.CloseAll()
		dests = append(dests, web)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var released atomic.Int64
	want := int64(*periods * len(streams))
	reg := prometheus.NewRegistry()
	lateness := metrics.NewLateness(reg)
	e, err := edge.New(edge.Config{
		ID: uint32(*id), Clock: clock, ClockSource: *role.clock.name, Trusted: src.trusted, Senders: dests, Waiter: ptp.Precise{Priority: *rtPriority}, WakeHead: wakeHead,
		Lead: *lead, Rounds: *rounds, Repeat: *repeat, Spacing: *spacing, Logger: log,
		OnRelease: func(r edge.Report) {
			lateness.Observe(r)
			if want > 0 && released.Add(1) >= want {
				cancel()
			}
		},
	})
	if err != nil {
		return err
	}
	// The edge's parts — the release engine (and its unicast server), the
	// bundle source, the metrics server — run under one errgroup: an error
	// in any ends the edge with that error.
	g, gctx := errgroup.WithContext(ctx)
	var running atomic.Bool
	// The conditions of readiness, for /readyz and for systemd.
	checks := []metrics.Check{
		{Name: "edge", Live: true, Eval: func() (bool, string) {
			if running.Load() {
				return true, "release loop running"
			}
			return false, "release loop stopped"
		}},
		metrics.SendersCheck(e),
		metrics.BundlesCheck(e, streams, *readyAhead, *readyGrace),
	}
	if srv != nil {
		checks = append(checks, metrics.UnicastCheck(srv))
	}
	if pl != nil {
		checks = append(checks, metrics.OriginCheck(pl.Origins))
	}
	// systemd's readiness is the releases': a browser certificate that has
	// expired fails /readyz (browsers cannot connect) but must not keep an
	// edge that multicasts and unicasts from starting.
	startChecks := slices.Clone(checks)
	if webCert != nil {
		checks = append(checks, metrics.BrowserCertificateCheck(webCert))
	}
	if *metricsAddr != "" {
		metrics.RegisterProcess(reg, "edge")
		metrics.RegisterEdge(reg, e)
		metrics.RegisterClock(reg, clock)
		metrics.RegisterAhead(reg, e, streams)
		if ds := *role.clock.daemon; ds != nil {
			metrics.RegisterClockSource(reg, ds)
		}
		if srv != nil {
			metrics.RegisterUnicast(reg, srv)
		}
		if web != nil {
			metrics.RegisterBrowsers(reg, web.Stats)
		}
		if webCert != nil {
			metrics.RegisterBrowserCertificate(reg, webCert)
		}
		if pl != nil {
			metrics.RegisterPoller(reg, pl)
		}
		at, err := serveHTTP(gctx, g, *metricsAddr, metrics.Handler(reg, clock, checks...), 30*time.Second)
		if err != nil {
			return fmt.Errorf("-metrics: %w", err)
		}
		log.Info("metrics", "addr", "http://"+at+"/metrics", "liveness", "/healthz", "readiness", "/readyz")
	}
	if *browserAddr != "" {
		var tlsConf *tls.Config
		scheme := "ws://"
		if *browserTLS {
			tlsConf, scheme = webCert.TLSConfig(), "wss://"
		}
		at, err := serveHTTPS(gctx, g, *browserAddr, web.Handler(), 30*time.Second, tlsConf, web.Listener)
		if err != nil {
			return fmt.Errorf("-browser: %w", err)
		}
		log.Info("browsers", "addr", scheme+at+"/", "transport", "WebSocket")
	}
	if *browserWT != "" {
		pc, err := net.ListenPacket("udp", *browserWT)
		if err != nil {
			return fmt.Errorf("-browser-wt: %w", err)
		}
		g.Go(func() error { defer pc.Close(); return web.ServeWebTransport(gctx, pc, webCert.TLSConfig()) })
		log.Info("browsers", "addr", "https://"+pc.LocalAddr().String()+"/", "transport", "WebTransport")
	}
	notifySystemd(gctx, g, log, func() error {
		return metrics.Ready(append([]metrics.Check{metrics.ClockCheck(clock)}, startChecks...)...)
	})
	g.Go(func() error { return ignoreCanceled(src.run(gctx, e.Add)) })
	running.Store(true)
	g.Go(func() error { defer running.Store(false); return ignoreCanceled(e.Run(gctx)) })
	log.Info("edge running", "id", *id, "streams", streams.String(), "bundles from", src.desc)
	err = g.Wait()
	if web != nil {
		ws := web.Stats()
		log.Info("browsers", "accepted", ws.Accepted, "refused", ws.Refused, "messages sent", ws.Sent, "closed slow", ws.Slow, "closed for sending", ws.BadInput)
	}
	st := e.Stats()
	fmt.Fprintf(stdout, "edge %d: released %s, %d failed, %d past on arrival (kept for catch-up) (%s sent, %d unsent; %s sent, %d unsent, in %s), max lateness %v, %s, %s; clock %s: widest bound at a release ±%v, oldest data behind it %v\n",
		*id, count(st.Released, "period"), st.ReleaseFailed, st.Past, count(st.ReleaseCopies, "RELEASE datagram"), st.ReleaseUnsent,
		count(st.ShardsSent, "ANNOUNCE datagram"), st.AnnounceUnsent, count(st.Rounds, "round"), st.MaxLateness, count(st.Holds, "clock hold"), count(st.SendErrors, "send error"),
		*role.clock.name, st.MaxBound, st.MaxClockAge)
	return err
}

// fifoWakeHead is the edge's WakeHead at real-time priority: a second
// (the lab saw a normal-priority wake-up 0.98 s late on a loaded VM), at
// the cost of ten 100 ms sleeps of a real-time thread per release.
const fifoWakeHead = time.Second

// ignoreCanceled is err, unless it only says the role was stopped.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// bundleSource is where an edge's bundles come from, and the origin key
// they must be signed by.
type bundleSource struct {
	trusted *seal.KeyRing
	desc    string
	run     func(ctx context.Context, add func(*bundle.Bundle) error) error
}

// embeddedOrigin rotates keys in this process from a key directory: labs
// and single-edge setups without the origin service.
func embeddedOrigin(dir string, streams []uint32, sched origin.Schedule, clock ptp.Clock, log *slog.Logger) (bundleSource, error) {
	if err := sched.Check(); err != nil {
		return bundleSource{}, err
	}
	signer, err := readOriginKey(filepath.Join(dir, originKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return bundleSource{}, fmt.Errorf("%w: make an event's keys with 'embargo keys -dir %s', or fetch bundles from an origin service with -origin", err, dir)
	}
	if err != nil {
		return bundleSource{}, err
	}
	master, err := readMasterKey(filepath.Join(dir, masterKeyFile))
	if err != nil {
		return bundleSource{}, err
	}
	org, err := origin.New(signer, master)
	if err != nil {
		return bundleSource{}, err
	}
	// Derived, not drawn: a restarted edge reissues the same RK for a
	// period its receivers already hold the ANNOUNCE of.
	rot := &origin.Rotation{Origin: org, Schedule: sched, Streams: streams, Keys: 2, Clock: clock, Derive: true, Logger: log}
	id := seal.KeyID(org.PublicKey())
	return bundleSource{
		trusted: seal.NewKeyRing(org.PublicKey()),
		desc:    fmt.Sprintf("embedded origin %x, %v periods", id, sched.Period),
		run: func(ctx context.Context, add func(*bundle.Bundle) error) error {
			return rot.Run(ctx, func(is origin.Issued) error { return add(is.Bundle) })
		},
	}, nil
}

// remoteOrigin polls the origin service over mutual TLS; the origin's
// signing key comes from its session description, fetched over the same
// verified TLS. An origin that is down at start does not stop the edge:
// the poller retries the session with backoff, and the edge stays not
// ready (no bundles ahead) until it answers.
func remoteOrigin(urls []string, timeout time.Duration, certs string, streams []uint32, clock ptp.Clock, log *slog.Logger) (bundleSource, *poller.Poller, error) {
	cert, client, err := originClient(certs, edgeCert)
	if err != nil {
		return bundleSource{}, nil, err
	}
	trusted := seal.NewKeyRing()
	origins := fetch.NewOrigins(urls...)
	p := &poller.Poller{Origins: origins, Streams: streams, Client: client, Key: cert.Key, Interval: originPoll, Clock: clock, Logger: log}
	p.Start = func(ctx context.Context) error {
		return originSession(ctx, client, origins, len(urls), timeout, trusted, log)
	}
	return bundleSource{
		trusted: trusted,
		desc:    "origin " + strings.Join(urls, ","),
		run:     p.Run,
	}, p, nil
}

// How an edge polls the origin, and how long one request to a replica may
// take (replicaTimeout).
const (
	originPoll           = 500 * time.Millisecond
	defaultOriginTimeout = 5 * time.Second
	minOriginTimeout     = 100 * time.Millisecond
)

// originSession fetches the origin's session description from whichever
// of the replicas answers, trusts its key, and with two replicas or more
// bounds each request to one by the session's announce lead from then on
// (replicaTimeout); timeout is -origin-timeout, 0 if not set. A lone
// origin keeps timeout, or defaultOriginTimeout: with no other replica to
// try, cutting a slow answer short would only ask the same one again.
func originSession(ctx context.Context, client *http.Client, origins *fetch.Origins, replicas int, timeout time.Duration, trusted *seal.KeyRing, log *slog.Logger) error {
	origins.SetTimeout(cmp.Or(timeout, defaultOriginTimeout))
	sess, err := session.FetchFrom(ctx, client, origins, session.Path)
	if err != nil {
		return err
	}
	pub, err := sess.PublicKey()
	if err != nil {
		return err
	}
	trusted.Add(pub)
	if replicas > 1 {
		origins.SetTimeout(replicaTimeout(timeout, sess.Lead(), log))
	}
	log.Info("origin session", "origin", origins.Current(), "key id", sess.KeyID, "lead", sess.Lead(), "replica timeout", origins.Timeout())
	return nil
}

// replicaTimeout is how long one request to an origin replica may take
// before the edge tries the next, given the origin's announce lead (0:
// unknown) and -origin-timeout (0: not set). A hung replica must not cost
// a period its ANNOUNCE: a bundle is issued lead before its release, the
// edge may ask for it up to a poll interval later, and half of what is
// left is for the wait, half for the carousel. Unset, the timeout is that
// half, within minOriginTimeout … defaultOriginTimeout; set, it is
// honoured, with a warning if it is longer.
func replicaTimeout(timeout, lead time.Duration, log *slog.Logger) time.Duration {
	if lead <= 0 {
		return cmp.Or(timeout, defaultOriginTimeout)
	}
	allowed := (lead - originPoll) / 2
	if timeout == 0 {
		return min(max(allowed, minOriginTimeout), defaultOriginTimeout)
	}
	if timeout > allowed {
		log.Warn(fmt.Sprintf("-origin-timeout %v is too long for the origin's announce lead %v: a hung replica would cost periods their ANNOUNCE before the edge tries the next; set -origin-timeout to at most %v, or leave it unset", timeout, lead, max(allowed, minOriginTimeout)))
	}
	return timeout
}

// originClient is an HTTPS client of the origin for the role whose
// certificate is name in the certs directory: mutual TLS 1.3, the origin
// checked against the directory's CA.
func originClient(certs, name string) (*pki.Cert, *http.Client, error) {
	cert, err := pki.Load(certs, name)
	if err != nil {
		return nil, nil, err
	}
	cas, err := pki.LoadPool(filepath.Join(certs, caFile+".pem"))
	if err != nil {
		return nil, nil, err
	}
	return cert, &http.Client{Transport: &http.Transport{TLSClientConfig: poller.ClientTLS(cert.TLS(), cas)}, Timeout: 30 * time.Second}, nil
}

// browserCertificate is the browsers' certificate: from certKey
// ("cert.pem,key.pem"), watched for renewals; else, with WebTransport, a
// self-signed one for the address it will serve (whose hash it logs);
// else none (ws:// only).
func browserCertificate(certKey, wtAddr string, log *slog.Logger) (*webedge.Certificate, error) {
	if certKey != "" {
		cert, key, ok := strings.Cut(certKey, ",")
		if !ok {
			return nil, flagConflict("-browser-cert %q: want cert.pem,key.pem", certKey)
		}
		c, err := webedge.LoadCertificate(cert, key, log)
		if err != nil {
			return nil, fmt.Errorf("-browser-cert: %w", err)
		}
		return c, nil
	}
	if wtAddr == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(wtAddr)
	if err != nil {
		return nil, fmt.Errorf("-browser-wt %q: %w", wtAddr, err)
	}
	hosts := []string{"localhost"}
	if host != "" {
		hosts = append(hosts, host)
	}
	conf, hash, err := webedge.SelfSigned(hosts, time.Now(), webedge.MaxSelfSigned-24*time.Hour)
	if err != nil {
		return nil, err
	}
	log.Info("browsers: self-signed WebTransport certificate, valid 13 days; pages pin it with serverCertificateHashes", "sha-256", hex.EncodeToString(hash[:]))
	return webedge.FixedCertificate(conf.Certificates[0])
}
