package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"slices"
	"syscall"

	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/bpf"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/internal/pki"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

func runRecv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("recv", `Receive key periods from multicast groups, as a device would: rebuild each ANNOUNCE, verify the
origin's signature, check each RELEASE against the commitment, unwrap the content keys with the
master key, and print one line per period with the kernel arrival time of its first RELEASE
against releaseAt.`, stdout)
	pubPath := fs.String("pub", "embargo-keys/"+originPubFile, "the origin's public key (PEM)")
	masterPath := fs.String("master", "embargo-keys/"+masterKeyFile, "the master key (hex); empty: receive without it (nothing is usable)")
	groups := groupsFlag()
	fs.Var(groups, "group", groupHelp)
	streams := streamsFlag{1}
	fs.Var(&streams, "streams", "comma-separated stream ids to receive")
	edges := edgesFlag()
	fs.Var(edges, "edge", "subscribe by unicast to this edge (host:port), repeatable; with -edge and no -group, no multicast")
	catchUp := fs.Int("catch-up", 2, "released periods per stream a unicast subscription asks for")
	session := fs.String("session", "", "configure from an origin's session description (https://host:port/v1/session): its key, groups and edges")
	token := fs.String("token", "", "with -session: bearer token for the master-key licence")
	caPath := fs.String("ca", "", "with -session: CA certificate (PEM) the origin's TLS certificate must chain to (default: the system's)")
	proxyAddr := fs.String("licence-proxy", "", "serve W3C ClearKey licences for released keys on this address (e.g. 127.0.0.1:8080), for an unmodified player")
	periods := fs.Int("periods", 0, "exit after this many periods (0: run until interrupted)")
	asJSON := fs.Bool("json", false, "print one JSON object per period instead of text")
	showKeys := fs.Bool("show-keys", false, "print content keys, not only their KIDs")
	level := fs.String("log", "warn", "log level: debug, info, warn, error")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	var pub ed25519.PublicKey
	var master []byte
	if *session != "" {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "streams" })
		sess, m, chosen, err := fromSession(ctx, *session, *token, *caPath, streams, explicit)
		if err != nil {
			return err
		}
		streams = chosen
		if pub, err = sess.PublicKey(); err != nil {
			return err
		}
		master = m
		if len(groups.values) == 0 && len(edges.values) == 0 {
			for _, g := range sess.Groups {
				if err := groups.Set(g); err != nil {
					return fmt.Errorf("session group: %w", err)
				}
			}
			for _, e := range sess.Edges {
				if err := edges.Set(e); err != nil {
					return fmt.Errorf("session edge: %w", err)
				}
			}
		}
	} else {
		if pub, err = readOriginPub(*pubPath); err != nil {
			return err
		}
		if *masterPath != "" {
			if master, err = readMasterKey(*masterPath); err != nil {
				return err
			}
		}
	}
	tai := ptp.DefaultTAIOffset
	if sys, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Second)); err == nil {
		tai = sys.TAIOffset()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var proxy *clearkey.Proxy
	if *proxyAddr != "" {
		proxy = clearkey.NewProxy(clearkey.ProxyConfig{Logger: log})
		// A held request waits up to MaxWait: the write timeout outlasts it.
		at, err := serveHTTP(ctx, *proxyAddr, proxy, clearkey.DefaultMaxWait+10*time.Second)
		if err != nil {
			return fmt.Errorf("-licence-proxy: %w", err)
		}
		fmt.Fprintf(stderr, "recv: ClearKey licence proxy on http://%s/ (a request for a key waits for its release)\n", at)
	}
	var mu sync.Mutex
	got := 0
	r, err := receiver.New(receiver.Config{
		Trusted: seal.NewKeyRing(pub), Master: master, Streams: streams, TAIOffset: tai, Logger: log,
		OnEvent: func(ev receiver.Event) {
			mu.Lock()
			defer mu.Unlock()
			printEvent(stdout, ev, *asJSON, *showKeys)
			if proxy != nil {
				proxy.Deliver(ev)
			}
			if got++; *periods > 0 && got >= *periods {
				cancel()
			}
		},
	})
	if err != nil {
		return err
	}
	var srcs []receiver.Source
	closeAll := func() {
		for _, s := range srcs {
			s.Close()
		}
	}
	if len(groups.values) > 0 || len(edges.values) == 0 {
		for _, g := range groupsOrDefault(groups) {
			c, err := udp.Listen(g)
			if err != nil {
				closeAll()
				return err
			}
			srcs = append(srcs, c)
			log.Info("listening", "group", g.String())
		}
	}
	for _, e := range edges.values {
		c, err := unicast.Dial(unicast.ClientConfig{Edge: e, Streams: streams, CatchUp: *catchUp, Logger: log})
		if err != nil {
			closeAll()
			return err
		}
		srcs = append(srcs, c)
		log.Info("subscribing", "edge", e)
	}
	filter := kernelStamps(stderr, log, tai, srcs)
	if filter != nil {
		defer filter.Close()
	}
	err = r.Run(ctx, srcs...)
	st := r.Stats()
	fmt.Fprintf(stderr, "recv: %d periods delivered; drops %v\n", st.Delivered, st.Drops)
	if st.Skew.Total() > 0 {
		fmt.Fprintf(stderr, "recv: arrival − releaseAt (socket stamps): %v\n", quantiles(st.Skew))
	}
	if filter != nil {
		if h, err := filter.Histogram(); err == nil && h.Total() > 0 {
			fmt.Fprintf(stderr, "recv: arrival − releaseAt (kernel eBPF stamps): %v\n", quantiles(h))
		}
		if v, err := filter.Verdicts(); err == nil {
			fmt.Fprintf(stderr, "recv: kernel filter verdicts %v\n", v)
		}
	}
	return err
}

// kernelStamps attaches the eBPF filter to every source where BPF may be
// loaded, and says once which stamps this receiver reports.
func kernelStamps(stderr io.Writer, log *slog.Logger, tai ptp.TAIOffset, srcs []receiver.Source) *bpf.Filter {
	if err := bpf.Available(); err != nil {
		fmt.Fprintf(stderr, "recv: arrival stamps from SO_TIMESTAMPNS in user space (eBPF filter unavailable: %v)\n", err)
		return nil
	}
	f, err := bpf.NewFilter()
	if err == nil {
		err = f.SetTAIOffset(time.Duration(tai))
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
		line += fmt.Sprintf(", resource of %d bytes", len(ev.Resource))
	}
	if ev.CatchUp {
		line += " (catch-up: it joined after the release)"
	}
	fmt.Fprintln(w, line)
}

// fromSession reads an origin's session description and, with a token,
// the master key of the (first) stream.
func fromSession(ctx context.Context, url, token, caPath string, streams []uint32, explicit bool) (*keyserver.Session, []byte, []uint32, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if caPath != "" {
		pool, err := pki.LoadPool(caPath)
		if err != nil {
			return nil, nil, nil, err
		}
		tlsCfg.RootCAs = pool
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
	sess, err := keyserver.FetchSession(ctx, client, url)
	if err != nil {
		return nil, nil, nil, err
	}
	if streams, err = sessionStreams(sess.Streams, streams, explicit, token != ""); err != nil {
		return nil, nil, nil, err
	}
	if token == "" {
		return sess, nil, streams, nil
	}
	master, err := keyserver.FetchMaster(ctx, client, sess.LicenceURL(streams[0]), token)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("licence: %w", err)
	}
	return sess, master, streams, nil
}

// sessionStreams picks the streams a receiver configured from a session
// takes: those asked for with -streams (each must be the session's), else
// the session's. Each stream has its own master key and a receiver holds
// one, so with a licence token it takes exactly one stream.
func sessionStreams(offered, asked []uint32, explicit, licence bool) ([]uint32, error) {
	chosen := offered
	if explicit {
		for _, s := range asked {
			if !slices.Contains(offered, s) {
				return nil, fmt.Errorf("stream %d is not in the session (it offers %v)", s, offered)
			}
		}
		chosen = asked
	}
	switch {
	case len(chosen) == 0:
		return nil, errors.New("the session offers no streams")
	case licence && len(chosen) > 1:
		return nil, fmt.Errorf("the session offers streams %v, each with its own master key: pick one with -streams", chosen)
	}
	return chosen, nil
}
