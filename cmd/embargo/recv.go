package main

import (
	"context"
	"log/slog"
	"syscall"

	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/bpf"
	"github.com/embargo-live/embargo/bpf/skew"

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
	var groups groupsFlag
	fs.Var(&groups, "group", groupHelp)
	streams := streamsFlag{1}
	fs.Var(&streams, "streams", "comma-separated stream ids to receive")
	var edges edgesFlag
	fs.Var(&edges, "edge", "subscribe by unicast to this edge (host:port), repeatable; with -edge and no -group, no multicast")
	catchUp := fs.Int("catch-up", 2, "released periods per stream a unicast subscription asks for")
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
	pub, err := readOriginPub(*pubPath)
	if err != nil {
		return err
	}
	var master []byte
	if *masterPath != "" {
		if master, err = readMasterKey(*masterPath); err != nil {
			return err
		}
	}
	tai := ptp.DefaultTAIOffset
	if sys, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Second)); err == nil {
		tai = sys.TAIOffset()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	got := 0
	r, err := receiver.New(receiver.Config{
		Trusted: seal.NewKeyRing(pub), Master: master, Streams: streams, TAIOffset: tai, Logger: log,
		OnEvent: func(ev receiver.Event) {
			mu.Lock()
			defer mu.Unlock()
			printEvent(stdout, ev, *asJSON, *showKeys)
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
	if len(groups) > 0 || len(edges) == 0 {
		for _, g := range groups.orDefault() {
			c, err := udp.Listen(g)
			if err != nil {
				closeAll()
				return err
			}
			srcs = append(srcs, c)
			log.Info("listening", "group", g.String())
		}
	}
	for _, e := range edges {
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
		var kernel time.Duration
		if kernel, err = bpf.KernelTAIOffset(); err == nil {
			err = f.SetTAICorrection(time.Duration(tai) - kernel)
		}
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
}

func printEvent(w io.Writer, ev receiver.Event, asJSON, showKeys bool) {
	j := eventJSON{
		Stream: ev.Stream, Period: ev.Period, ReleaseAt: ev.ReleaseAt, PresentAt: ev.PresentAt,
		Arrival: ev.Arrival, LatenessNs: ev.Arrival - ev.ReleaseAt, Edge: ev.EdgeID, From: ev.From.String(),
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
	fmt.Fprintln(w, line)
}
