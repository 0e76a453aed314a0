package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
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
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("edge", `Run an edge: carousel each key period's ANNOUNCE to the multicast groups from -lead before its
release, and send its RELEASE at releaseAt by the clock's earliest possible time (never early;
an unsynchronized clock holds the release and says so).

With -origin it fetches release bundles from the origin service over mutual TLS. Without it, it
runs an embedded origin from the keys in -keys (see 'embargo keys'): period p of every stream is
released at p × -period TAI. One embedded origin serves one edge; several edges need -origin.`, stdout)
	keys := fs.String("keys", "embargo-keys", "without -origin: run an embedded origin from "+originKeyFile+" and "+masterKeyFile+" in this directory")
	originURL := fs.String("origin", "", "fetch release bundles from this origin service (https://host:port) over mutual TLS")
	certs := fs.String("certs", "embargo-certs", "with -origin: directory with ca.pem and this edge's edge.pem/edge.key")
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
	unicastAddr := fs.String("unicast", "", "also serve unicast subscribers on this address, e.g. [::]:7272 (default: multicast only)")
	senders := fs.Int("senders", 0, "unicast sender sockets and threads (default: one per core)")
	requireTokens := fs.Bool("require-tokens", false, "unicast: subscribe only receivers presenting a subscription token signed by the origin key (issued with each licence)")
	maxPerAddr := fs.Int("max-per-address", unicast.DefaultMaxPerAddress, "unicast: most subscriptions from one IP address")
	prefixBits := fs.Int("ipv6-prefix", unicast.DefaultPrefixBits, "unicast: IPv6 prefix length counted as one site for -max-per-prefix and the subscribe rate")
	maxPerPrefix := fs.Int("max-per-prefix", unicast.DefaultMaxPerAddress, "unicast: most subscriptions from one IPv6 prefix of -ipv6-prefix bits")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics and /healthz (200 while the clock is synchronized) on this address, e.g. 127.0.0.1:9171")
	role := addRoleFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, clock, err := role.open(stderr, "releases will be held until it is")
	if err != nil {
		return err
	}
	var src bundleSource
	if *originURL != "" {
		src, err = remoteOrigin(ctx, *originURL, *certs, streams, log)
	} else {
		src, err = embeddedOrigin(*keys, streams, origin.Schedule{Period: *period, Lead: *lead, PresentDelay: *present}, clock, log)
	}
	if err != nil {
		return err
	}
	var dests []edge.Sender
	if len(groups.values) > 0 || *unicastAddr == "" {
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
			Listen: listen, Senders: *senders, Clock: clock, Logger: log, Sessions: sc,
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		dests = append(dests, srv)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var released atomic.Int64
	want := int64(*periods * len(streams))
	reg := prometheus.NewRegistry()
	lateness := metrics.NewLateness(reg)
	e, err := edge.New(edge.Config{
		ID: uint32(*id), Clock: clock, Trusted: src.trusted, Senders: dests,
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
	if *metricsAddr != "" {
		metrics.RegisterEdge(reg, e)
		metrics.RegisterClock(reg, clock)
		if srv != nil {
			metrics.RegisterUnicast(reg, srv)
		}
		at, err := serveHTTP(gctx, g, *metricsAddr, metrics.Handler(reg, clock), 30*time.Second)
		if err != nil {
			return fmt.Errorf("-metrics: %w", err)
		}
		log.Info("metrics", "addr", "http://"+at+"/metrics", "health", "/healthz")
	}
	g.Go(func() error { return ignoreCanceled(src.run(gctx, e.Add)) })
	g.Go(func() error { return ignoreCanceled(e.Run(gctx)) })
	log.Info("edge running", "id", *id, "streams", streams.String(), "bundles from", src.desc)
	err = g.Wait()
	st := e.Stats()
	fmt.Fprintf(stdout, "edge %d: released %d periods (%d RELEASE datagrams, %d ANNOUNCE datagrams in %d rounds), max lateness %v, %d clock holds, %d send errors\n",
		*id, st.Released, st.ReleaseCopies, st.ShardsSent, st.Rounds, st.MaxLateness, st.Holds, st.SendErrors)
	return err
}

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
	rot := &origin.Rotation{Origin: org, Schedule: sched, Streams: streams, Keys: 2, Clock: clock, Logger: log}
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
// verified TLS.
func remoteOrigin(ctx context.Context, url, certs string, streams []uint32, log *slog.Logger) (bundleSource, error) {
	cert, err := pki.Load(certs, edgeCert)
	if err != nil {
		return bundleSource{}, err
	}
	cas, err := pki.LoadPool(filepath.Join(certs, caFile+".pem"))
	if err != nil {
		return bundleSource{}, err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: poller.ClientTLS(cert.TLS(), cas)}, Timeout: 30 * time.Second}
	sess, err := session.Fetch(ctx, client, url+"/v1/session")
	if err != nil {
		return bundleSource{}, err
	}
	pub, err := sess.PublicKey()
	if err != nil {
		return bundleSource{}, err
	}
	p := &poller.Poller{Origin: url, Streams: streams, Client: client, Key: cert.Key, Interval: 500 * time.Millisecond, Logger: log}
	return bundleSource{
		trusted: seal.NewKeyRing(pub),
		desc:    fmt.Sprintf("origin %s (key id %s)", url, sess.KeyID),
		run:     p.Run,
	}, nil
}
