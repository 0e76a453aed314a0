package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/bpf"
	"github.com/embargo-live/embargo/engine/device"
	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/internal/keyfile"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/ptp"
)

func runRecv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newRoleFlags("recv", `Receive key periods from multicast groups, as a device would: rebuild each ANNOUNCE, verify the
origin's signature, check each RELEASE against the commitment, unwrap the content keys with the
master key, and print one line per period with the kernel arrival time of its first RELEASE
against releaseAt.`, stdout)
	pubPath := fs.String("pub", "embargo-keys/"+originPubFile, "the origin's public key (PEM)")
	masterPath := fs.String("master", "embargo-keys/"+masterKeyFile, "file holding the master key (hex; see embargo keys), not the key itself; empty: receive without it (nothing is usable)")
	groups := groupsFlag()
	fs.Var(groups, "group", groupHelp)
	streams := streamsFlag{1}
	fs.Var(&streams, "streams", "comma-separated stream ids to receive")
	edges := edgesFlag()
	fs.Var(edges, "edge", "subscribe by unicast to this edge (host:port), repeatable; with -edge and no -group, no multicast")
	onlyFrom := &listFlag[netip.Addr]{parse: netip.ParseAddr}
	fs.Var(onlyFrom, "from", "take datagrams only from this address, an edge's sending to the groups, repeatable (-edge addresses and group sources are added); others are dropped, in the kernel with the eBPF filter, and counted as foreign-source")
	catchUp := fs.Int("catch-up", 2, "released periods per stream a unicast subscription asks for")
	sessionURL := fs.String("session", "", "configure from an origin's session description (https://host:port/v1/session): its key, groups and edges; comma-separated for the origin's replicas, failed over for the session and the licence")
	token := fs.String("token", "", "with -session: bearer token for the master-key licence (visible to other users in the process list: prefer -token-file or EMBARGO_TOKEN)")
	tokenFile := fs.String("token-file", "", "with -session: file (mode 0600) holding the bearer token for the master-key licence")
	caPath := fs.String("ca", "", "with -session: CA certificate (PEM) the origin's TLS certificate must chain to (default: the system's)")
	proxyAddr := fs.String("licence-proxy", "", "serve W3C ClearKey licences for released keys on this loopback address (e.g. 127.0.0.1:8080), for an unmodified player")
	proxyOrigins := fs.String("licence-proxy-origin", "", "comma-separated web origins (https://player.example) whose pages may use the licence proxy; others are refused")
	proxyPublic := fs.Bool("licence-proxy-public", false, "let -licence-proxy listen on a non-loopback address: every host that reaches it can take released keys")
	proxyHosts := fs.String("licence-proxy-host", "", "with -licence-proxy-public: comma-separated names (host or host:port) the proxy answers to in the Host header")
	periods := fs.Int("periods", 0, "exit after this many periods (0: run until interrupted)")
	asJSON := fs.Bool("json", false, "print one JSON object per period instead of text")
	showKeys := fs.Bool("show-keys", false, "print content keys, not only their KIDs")
	logging := addLogFlags(fs, "warn")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics (periods delivered, drops by reason, arrival skew, origin failovers), /healthz and /readyz (with a licence: the origin replica in use) on this address, e.g. 127.0.0.1:9172")
	every := fs.Duration("diagnose", 4*time.Second, "say why, at this interval (two default periods), while no period is delivered: datagrams failing verification, keys not unwrapping, nothing arriving")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, u := range list(*sessionURL) {
		if err := checkOriginURL("-session", u); err != nil {
			return err
		}
	}
	if *tokenFile != "" {
		if *token != "" {
			return usageError{"-token and -token-file both give the licence token; keep one"}
		}
		data, err := keyfile.Read(*tokenFile)
		if err != nil {
			return err
		}
		*token = strings.TrimSpace(string(data))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *sessionURL != "" && *token == "":
		return flagConflict("-session without -token or -token-file gets no master key: every period would be verified and unusable; give one")
	case *sessionURL == "" && (set["token"] || set["token-file"] || set["ca"]):
		return flagConflict("-token, -token-file and -ca only work with -session")
	case *sessionURL != "" && (set["pub"] || set["master"]):
		return flagConflict("-pub and -master contradict -session, which names the origin key and licenses the master key: drop one")
	case *every <= 0:
		return flagConflict("-diagnose must be positive")
	}
	log, err := logging.logger(stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	got := 0
	var filter *bpf.Filter // set before Run; read under mu
	cfg := device.Config{
		Groups: groups.values, Edges: edges.values, OnlyFrom: onlyFrom.values, CatchUp: *catchUp, Logger: log,
		LicenceProxy: *proxyAddr, LicenceProxyOrigins: list(*proxyOrigins), LicenceProxyPublic: *proxyPublic, LicenceProxyHosts: list(*proxyHosts),
		OnEvent: func(ev receiver.Event) {
			mu.Lock()
			defer mu.Unlock()
			if filter != nil {
				filter.Confirm(ev.Stream, ev.Period, &ev.RK, ev.ReleaseAt)
			}
			printEvent(stdout, ev, *asJSON, *showKeys)
			if got++; *periods > 0 && got >= *periods {
				cancel()
			}
		},
	}
	keys := recvKeys{session: *sessionURL, token: *token, ca: *caPath, pub: *pubPath, master: *masterPath, streams: streams, streamsSet: set["streams"]}
	if err := keys.apply(&cfg); err != nil {
		return err
	}
	d, err := device.New(ctx, cfg)
	if err != nil {
		return err
	}
	if at := d.LicenceProxyAddr(); at != "" {
		fmt.Fprintf(stderr, "recv: ClearKey licence proxy on http://%s/ (a request for a key waits for its release)\n", at)
	}
	mu.Lock()
	filter = kernelStamps(stderr, log, d.TAIOffset(), d.Sources(), d.OnlyFromAll())
	mu.Unlock()
	if filter != nil {
		defer filter.Close()
	}
	var served errgroup.Group
	if *metricsAddr != "" {
		mctx, stopMetrics := context.WithCancel(ctx)
		defer func() { stopMetrics(); _ = served.Wait() }()
		at, err := serveHTTP(mctx, &served, *metricsAddr, metrics.Handler(recvMetrics(d), nil, recvChecks(d)...), 30*time.Second)
		if err != nil {
			d.Close()
			return fmt.Errorf("-metrics: %w", err)
		}
		log.Info("metrics", "addr", "http://"+at+"/metrics")
	}
	dctx, stopDiagnose := context.WithCancel(ctx)
	var diagnosed sync.WaitGroup
	diagnosed.Go(func() { diagnose(dctx, d, *every, stderr) })
	start := time.Now()
	err = d.Run(ctx)
	stopDiagnose()
	diagnosed.Wait()
	st := d.Stats().Stats
	printRecvStats(stderr, st, filter)
	if err != nil || st.Delivered > 0 {
		return err
	}
	// Without a master key by choice, verified periods are the result.
	if blind := *sessionURL == "" && *masterPath == ""; blind && st.Drops["no-master-key"] > 0 {
		return nil
	}
	why := d.Diagnose()
	if why == "" {
		why = fmt.Sprintf("drops %v", st.Drops)
	}
	return fmt.Errorf("delivered no period in %v: %s", time.Since(start).Round(time.Second), why)
}

// recvChecks are a receiver's conditions beside the HTTP server's own:
// with a licence, the origin replica its relicences go to and why it last
// moved, not ready while every replica failed the last one.
func recvChecks(d *device.Device) []metrics.Check {
	if o := d.Licences(); o != nil {
		return []metrics.Check{metrics.OriginCheck(o)}
	}
	return nil
}

// recvMetrics is a registry of a receiver's counters.
func recvMetrics(d *device.Device) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	metrics.RegisterProcess(reg, "recv")
	metrics.CounterFunc(reg, "recv", "periods_delivered_total", "Periods delivered: verified, released and unwrapped.", func() uint64 { return d.Stats().Delivered })
	metrics.CountersByLabel(reg, "recv", "drops_total", "Datagrams and periods dropped, by reason.", "reason", func() map[string]uint64 { return d.Stats().Drops })
	metrics.CounterFunc(reg, "recv", "origin_failovers_total", "Moves from a failing origin replica (no connection, timeout, 5xx) to the next, for the session and the licence.", func() uint64 { return d.Stats().OriginFailovers })
	for _, q := range []float64{0.5, 0.99, 1} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "embargo", Subsystem: "recv", Name: "skew_seconds",
			Help:        "Arrival − releaseAt of delivered periods (socket stamps), at a quantile (an upper bound: histogram buckets).",
			ConstLabels: prometheus.Labels{"quantile": strconv.FormatFloat(q, 'g', -1, 64)}},
			func() float64 { return d.Stats().Skew.Quantile(q).Seconds() }))
	}
	return reg
}

// diagnose says on stderr, every interval until ctx ends, why no period
// was delivered in it, if nothing was.
func diagnose(ctx context.Context, d *device.Device, every time.Duration, stderr io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if why := d.Diagnose(); why != "" {
				fmt.Fprintf(stderr, "recv: %s\n", why)
			}
		}
	}
}

// recvKeys is where recv's keys come from: an origin's session (-session,
// -token, -ca), or key files (-pub, -master).
type recvKeys struct {
	session, token, ca string
	pub, master        string
	streams            []uint32
	streamsSet         bool // -streams was given
}

// apply sets cfg's key source. With a session, the streams are the
// session's unless -streams was given.
func (k recvKeys) apply(cfg *device.Config) error {
	if k.session == "" {
		pub, err := readOriginPub(k.pub)
		if err != nil {
			return err
		}
		cfg.OriginKey, cfg.Streams = pub, k.streams
		if k.master != "" {
			cfg.Master, err = readMasterKey(k.master)
		}
		return err
	}
	cfg.Session, cfg.Token = k.session, k.token
	if k.streamsSet {
		cfg.Streams = k.streams
	}
	if k.ca != "" {
		pool, err := pki.LoadPool(k.ca)
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	return nil
}

// printRecvStats says what the receiver delivered and dropped, and the
// arrival skew its sockets and, with eBPF, the kernel saw.
func printRecvStats(stderr io.Writer, st receiver.Stats, filter *bpf.Filter) {
	fmt.Fprintf(stderr, "recv: %s delivered; %s (%d shard roots failed); drops %v\n", count(st.Delivered, "period"), count(st.SignatureChecks(), "signature check"), st.Assembly.Failed, st.Drops)
	if st.Skew.Total() > 0 {
		fmt.Fprintf(stderr, "recv: arrival − releaseAt (socket stamps): %v\n", quantiles(st.Skew))
	}
	if filter == nil {
		return
	}
	if h, err := filter.Histogram(); err == nil && h.Total() > 0 {
		fmt.Fprintf(stderr, "recv: arrival − releaseAt (kernel eBPF stamps of confirmed secrets): %v\n", quantiles(h))
	}
	// Every distinct secret's first kernel stamp, forged ones included:
	// apart, and never read as release skew.
	if h, err := filter.Unconfirmed(); err == nil && h.Total() > 0 {
		fmt.Fprintf(stderr, "recv: kernel stamps of every RELEASE secret seen (unconfirmed, forged included): n=%d, %d before their releaseAt\n", h.Total(), h.Counts[0])
	}
	if v, err := filter.Verdicts(); err == nil {
		fmt.Fprintf(stderr, "recv: kernel filter verdicts %v\n", v)
	}
}

// kernelStamps attaches the eBPF filter to every source where BPF may be
// loaded, dropping datagrams from addresses not in only (when there are
// any), and says once which stamps this receiver reports.
func kernelStamps(stderr io.Writer, log *slog.Logger, tai ptp.TAIOffset, srcs []receiver.Source, only []netip.Addr) *bpf.Filter {
	if err := bpf.Available(); err != nil {
		fmt.Fprintf(stderr, "recv: arrival stamps from SO_TIMESTAMPNS in user space (eBPF filter unavailable: %v)\n", err)
		return nil
	}
	f, err := bpf.NewFilter()
	if err == nil {
		err = f.SetTAIOffset(tai)
	}
	if err == nil && len(only) > 0 {
		err = f.SetSources(only)
	}
	for _, s := range srcs {
		if err != nil {
			break
		}
		if c, ok := s.(syscall.Conn); ok {
			err = f.Attach(c)
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		log.Warn("eBPF filter not attached; using socket stamps only", "err", err)
		fmt.Fprintf(stderr, "recv: arrival stamps from SO_TIMESTAMPNS in user space (eBPF filter failed: %v)\n", err)
		return nil
	}
	fmt.Fprintf(stderr, "recv: eBPF filter attached: kernel pre-filter and CLOCK_TAI arrival stamps, beside SO_TIMESTAMPNS\n")
	return f
}

func quantiles(h skew.Histogram) string {
	return fmt.Sprintf("n=%d p50 ≤ %v, p99 ≤ %v, max ≤ %v", h.Total(), h.Quantile(0.5), h.Quantile(0.99), h.Quantile(1))
}

type eventJSON struct {
	Stream     uint32   `json:"stream"`
	Period     uint64   `json:"period"`
	ReleaseAt  int64    `json:"releaseAt"`
	PresentAt  int64    `json:"presentAt"`
	Arrival    int64    `json:"arrival"`
	LatenessNs int64    `json:"latenessNs"`
	Edge       uint32   `json:"edge"`
	From       string   `json:"from"`
	KIDs       []string `json:"kids,omitempty"`
	Keys       []string `json:"keys,omitempty"`
	Resource   string   `json:"resource,omitempty"`
	CatchUp    bool     `json:"catchUp,omitempty"`
}

// maxShownResource is how much of a resource a text line quotes.
const maxShownResource = 256

func printEvent(w io.Writer, ev receiver.Event, asJSON, showKeys bool) {
	j := eventJSON{
		Stream: ev.Stream, Period: ev.Period, ReleaseAt: ev.ReleaseAt, PresentAt: ev.PresentAt,
		Arrival: ev.Arrival, LatenessNs: ev.Arrival - ev.ReleaseAt, Edge: ev.EdgeID, From: ev.From.String(), CatchUp: ev.CatchUp,
	}
	for _, k := range ev.Keys {
		j.KIDs = append(j.KIDs, hex.EncodeToString(k.KID[:]))
		if showKeys {
			j.Keys = append(j.Keys, hex.EncodeToString(k.Key[:]))
		}
	}
	if ev.Resource != nil {
		j.Resource = hex.EncodeToString(ev.Resource)
	}
	if asJSON {
		_ = json.NewEncoder(w).Encode(j)
		return
	}
	sign := "+"
	if j.LatenessNs < 0 {
		sign = "" // a clock error between edge and device, not an early release
	}
	line := fmt.Sprintf("stream %d period %d: %d keys (kid %s), arrived releaseAt%s%v from edge %d at %v",
		ev.Stream, ev.Period, len(ev.Keys), strings.Join(j.KIDs, ","), sign, time.Duration(j.LatenessNs), ev.EdgeID, ev.From)
	if showKeys {
		line += ", keys " + strings.Join(j.Keys, ",")
	}
	if ev.Resource != nil {
		// The bytes themselves, quoted (-json gives them all, in hex).
		shown, more := ev.Resource, ""
		if len(shown) > maxShownResource {
			shown, more = shown[:maxShownResource], "…"
		}
		line += fmt.Sprintf(", resource of %d bytes: %q%s", len(ev.Resource), shown, more)
	}
	if ev.CatchUp {
		line += " (catch-up: it joined after the release)"
	}
	fmt.Fprintln(w, line)
}
