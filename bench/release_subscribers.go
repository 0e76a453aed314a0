package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// This file is the subscriber process: MeasureRelease starts it by running
// its own executable again with subscriberEnv set, and ServeSubscribers
// takes over from there.

// subscriberEnv holds a subscriber process's subscriberSpec (JSON).
const subscriberEnv = "EMBARGO_BENCH_SUBSCRIBERS"

// subscriberSpec is what a subscriber process is told: which variant to
// subscribe to where, and what its subscribers must receive.
type subscriberSpec struct {
	Variant   string        `json:"variant"`
	Addr      string        `json:"addr"`               // NATS or WebSocket URL, edge or group address
	Origin    []byte        `json:"origin,omitempty"`   // embargo: the origin's public key
	CertHash  []byte        `json:"certHash,omitempty"` // browser-webtransport: the edge's certificate's SHA-256
	Stream    uint32        `json:"stream,omitempty"`
	Resource  []byte        `json:"resource"`
	TAIOffset ptp.TAIOffset `json:"taiOffset"` // converts receive stamps to the run's clock
	First     int           `json:"first"`     // the first subscriber's index in the run
	Count     int           `json:"count"`
	// Pace is the interval between two subscribers' connects in this
	// process (see subscribeRate).
	Pace time.Duration `json:"paceNs"`
}

// subscribeRate is how many subscribers per second all the subscriber
// processes together connect: a unicast subscription is about 4 datagrams
// (HELLO, COOKIE, SUBSCRIBE, SUBSCRIBED), so 50,000 subscribers keep under
// the machine's flood rule of 50,000 datagrams a second (some 20,000)
// while they connect, in 10 s.
const subscribeRate = 5000

// subscriberReport is a subscriber process's one line of results.
type subscriberReport struct {
	// Got is each subscriber's user-space receive stamp of the byte-exact
	// resource (TAI ns); 0: none. Kernel is the kernel's stamp of the
	// datagram that released it, where the variant has one.
	Got     []int64       `json:"got"`
	Kernel  []int64       `json:"kernel,omitempty"`
	Corrupt int           `json:"corrupt"` // subscribers that received other bytes
	CPU     time.Duration `json:"cpuNs"`   // from ready to report
	RSS0    int64         `json:"rss0"`    // resident before any subscriber
	PeakRSS int64         `json:"peakRss"`
}

// ServeSubscribers makes this process a subscriber process if
// MeasureRelease started it as one: it then connects its subscribers,
// reports and exits, never returning. Otherwise it returns at once. A
// binary that runs MeasureRelease calls it first thing in main (or
// TestMain).
func ServeSubscribers() {
	env := os.Getenv(subscriberEnv)
	if env == "" {
		return
	}
	if err := serveSubscribers(env, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveSubscribers connects the subscribers, writes "ready", and once each
// has the resource or in is closed, writes its report.
func serveSubscribers(env string, in io.Reader, out io.Writer) error {
	var spec subscriberSpec
	if err := json.Unmarshal([]byte(env), &spec); err != nil {
		return fmt.Errorf("subscriber process: %s: %w", subscriberEnv, err)
	}
	rss0 := currentRSS()
	t := newTally(&spec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var mu sync.Mutex
	opened := func(c func()) {
		mu.Lock()
		closers = append(closers, c)
		mu.Unlock()
	}
	g := errgroup.Group{}
	g.SetLimit(16) // connect a few at a time: handshakes overlap, the machine is not flooded
	var clients []*subscriber.Client
	var pace <-chan time.Time
	if spec.Pace > 0 {
		t := time.NewTicker(spec.Pace)
		defer t.Stop()
		pace = t.C
	}
	for i := range spec.Count {
		if pace != nil && i > 0 {
			<-pace
		}
		g.Go(func() error {
			c, err := subscribe(ctx, &spec, i, t, opened)
			if c != nil {
				mu.Lock()
				clients = append(clients, c)
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("subscriber process (%s at %s): %w", spec.Variant, spec.Addr, err)
	}
	if err := allSubscribed(ctx, clients, readyTimeout(spec.Count)); err != nil {
		return err
	}
	cpu0 := processCPU()
	fmt.Fprintln(out, "ready")
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, in)
		close(stop)
	}()
	select {
	case <-t.all:
	case <-stop:
	}
	r := t.report()
	r.CPU, r.RSS0, r.PeakRSS = processCPU()-cpu0, rss0, peakRSS()
	return json.NewEncoder(out).Encode(r)
}

// subscribe connects subscriber i of spec's variant, delivering to t; it
// returns the embargo unicast client, which subscribes in the background.
func subscribe(ctx context.Context, spec *subscriberSpec, i int, t *tally, opened func(func())) (*subscriber.Client, error) {
	now := func() int64 { return spec.TAIOffset.FromTime(time.Now()) }
	// A peer's or browser's subscriber reads through a stamped socket
	// (stampedConn, stampedPacketConn): the last segment or packet read
	// before its message was handed over carried the message, or came
	// after it.
	var src stamper
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dialStamped(ctx, addr)
		if err != nil {
			return nil, err
		}
		src = c
		return c, nil
	}
	kernel := func() int64 {
		if src == nil {
			return 0
		}
		if at := src.stamp(); at != 0 {
			return at + int64(spec.TAIOffset)
		}
		return 0
	}
	switch spec.Variant {
	case PeerNATS:
		nc, err := nats.Connect(spec.Addr, nats.NoReconnect(), nats.SetCustomDialer(natsDialer(dial)))
		if err != nil {
			return nil, err
		}
		opened(nc.Close)
		if _, err := nc.Subscribe(natsSubject, func(m *nats.Msg) { t.deliver(i, now(), kernel(), m.Data) }); err != nil {
			return nil, err
		}
		return nil, nc.Flush() // the server holds the subscription
	case PeerWebSocket:
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}}
		c, _, err := websocket.Dial(ctx, spec.Addr, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			return nil, err
		}
		opened(func() { c.CloseNow() })
		go func() {
			if _, data, err := c.Read(ctx); err == nil {
				t.deliver(i, now(), kernel(), data)
			}
		}()
		return nil, nil
	case BrowserWebSocket, BrowserWebTransport:
		r, err := receiver.New(receiver.Config{
			Trusted: seal.NewKeyRing(spec.Origin), Streams: []uint32{spec.Stream}, TAIOffset: spec.TAIOffset,
			OnEvent: func(ev receiver.Event) { t.deliver(i, ev.Opened, kernel(), ev.Resource) },
		})
		if err != nil {
			return nil, err
		}
		return nil, dialBrowser(ctx, spec, r, dial, &src, opened)
	case ReleaseMulticast, ReleaseUnicast:
		r, err := receiver.New(receiver.Config{
			Trusted: seal.NewKeyRing(spec.Origin), Streams: []uint32{spec.Stream}, TAIOffset: spec.TAIOffset,
			OnEvent: func(ev receiver.Event) { t.deliver(i, ev.Opened, ev.Arrival, ev.Resource) },
		})
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(spec.Addr)
		if err != nil {
			return nil, err
		}
		var src receiver.Source
		var client *subscriber.Client
		if spec.Variant == ReleaseMulticast {
			g := releaseGroup
			g.Addr = ap
			src, err = udp.Listen(g)
		} else {
			client, err = subscriber.Dial(subscriber.Config{Edge: ap, Streams: []uint32{spec.Stream}, Retry: 50 * time.Millisecond, Local: loopbackSource(spec.First + i)})
			src = client
		}
		if err != nil {
			return nil, err
		}
		opened(func() { src.Close() })
		go r.Run(ctx, src)
		return client, nil
	}
	return nil, fmt.Errorf("unknown variant %q", spec.Variant)
}

// loopbackSource is the address the run's i-th unicast subscriber sends
// from: 20,000 a loopback address (127.0.1.1, 127.0.2.1, …), as one
// address's ephemeral ports (some 28,000) cannot hold 50,000 sockets.
func loopbackSource(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(1 + i/20000), 1})
}

// stamper is a socket that keeps its latest receive stamp (UTC ns; 0:
// none).
type stamper interface{ stamp() int64 }

// natsDialer dials NATS connections with a func.
type natsDialer func(ctx context.Context, addr string) (net.Conn, error)

func (d natsDialer) Dial(_, addr string) (net.Conn, error) { return d(context.Background(), addr) }

// allSubscribed waits up to patience until every unicast client holds its
// subscription (a poll: it runs before the release is scheduled, so its
// pace costs no subscriber the release).
func allSubscribed(ctx context.Context, clients []*subscriber.Client, patience time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, c := range clients {
		for !c.Subscribed() {
			select {
			case <-ctx.Done():
				return fmt.Errorf("subscriber process: a unicast client did not subscribe in %v", patience)
			case <-tick.C:
			}
		}
	}
	return nil
}

// tally records what each subscriber received: the first delivery counts.
type tally struct {
	want []byte
	all  chan struct{} // closed once every subscriber has received

	mu      sync.Mutex
	got     []int64
	kernel  []int64
	done    []bool
	left    int
	corrupt int
}

func newTally(spec *subscriberSpec) *tally {
	n := spec.Count
	return &tally{want: spec.Resource, all: make(chan struct{}), got: make([]int64, n), kernel: make([]int64, n), done: make([]bool, n), left: n}
}

// deliver records subscriber i's receipt of data at (user space) and
// kernel (0: no kernel stamp).
func (t *tally) deliver(i int, at, kernel int64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done[i] {
		return
	}
	t.done[i] = true
	if bytes.Equal(data, t.want) {
		// A stamp later than the hand-over is of a segment or packet read
		// after the one that carried the resource: that one arrived by
		// the hand-over, the latest it can have been.
		if kernel > at {
			kernel = at
		}
		t.got[i], t.kernel[i] = at, kernel
	} else {
		t.corrupt++
	}
	if t.left--; t.left == 0 {
		close(t.all)
	}
}

func (t *tally) report() subscriberReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return subscriberReport{Got: append([]int64(nil), t.got...), Kernel: append([]int64(nil), t.kernel...), Corrupt: t.corrupt}
}
