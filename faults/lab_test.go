//go:build linux

package faults

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// Host roles in a lab: host 0 runs the origin, hosts 1–3 the edges, the
// rest receivers.
const (
	originHost  = 0
	edgeHosts   = 3
	firstRecv   = 1 + edgeHosts
	stream      = 1
	unicastPort = 7272
)

// groupAddr is the suite's multicast group; it stays on the lab's bridge
// (hop limit 1, pinned to each host's lab interface).
var groupAddr = netip.MustParseAddrPort("239.77.9.1:7171")

// truth is the test's true clock: every role shares this host's system
// clock, and simulated edge clocks are distortions of it.
func truth() int64 { return ptp.SystemTAI() }

// offsetClock is an edge clock off true time by offset that states the
// given uncertainty: sound as long as |offset| ≤ uncertainty.
func offsetClock(offset, uncertainty time.Duration) ptp.Clock {
	return ptp.NewSim(ptp.WithOffset(offset), ptp.WithUncertainty(uncertainty, 0))
}

// lab is one scenario's topology and event: an origin with its keys and
// schedule, and the lab's hosts.
type lab struct {
	t      *testing.T
	net    *netns.Lab
	org    *origin.Origin
	master []byte
	ring   *seal.KeyRing
	sched  origin.Schedule
	// contentKeys is how many content keys bundle issues per period: 2,
	// a one-shard ANNOUNCE, unless a scenario sets it before the first.
	contentKeys int

	mu      sync.Mutex
	bundles map[uint64]*bundle.Bundle
	keys    map[uint64][]seal.ContentKey
}

// newLab builds a lab with recvHosts receiver hosts and an event whose
// period 0 is released start from now, then one every period, each
// announced lead before its release and presented one period after it.
func newLab(t *testing.T, recvHosts int, period, lead, start time.Duration) *lab {
	t.Helper()
	n := netnstest.New(t, firstRecv+recvHosts)
	org, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return &lab{
		t: t, net: n, org: org, master: master, ring: seal.NewKeyRing(org.PublicKey()),
		sched:       origin.Schedule{Epoch: truth() + int64(start), Period: period, Lead: lead, PresentDelay: period},
		contentKeys: 2,
		bundles:     map[uint64]*bundle.Bundle{}, keys: map[uint64][]seal.ContentKey{},
	}
}

func (l *lab) originHost() *netns.Host    { return l.net.Host(originHost) }
func (l *lab) edgeHost(i int) *netns.Host { return l.net.Host(1 + i%edgeHosts) }

// recvHost returns receiver host i (modulo the receiver hosts).
func (l *lab) recvHost(i int) *netns.Host {
	return l.net.Host(firstRecv + i%(len(l.net.Hosts())-firstRecv))
}

// group is the suite's group as seen from h.
func group(h *netns.Host) udp.Group {
	return udp.Group{Addr: groupAddr, Interface: h.Ifname, Hops: 1}
}

// edgeAddr is edge i's unicast address.
func (l *lab) edgeAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(l.edgeHost(i).IPv4, unicastPort)
}

// bundle issues period n once (the origin's role) and returns it.
func (l *lab) bundle(n uint64) *bundle.Bundle {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.bundles[n]; b != nil {
		return b
	}
	keys, err := l.org.NewContentKeys(l.contentKeys)
	if err != nil {
		l.t.Fatal(err)
	}
	b, err := l.org.Keys(stream, n, l.sched.At(n), keys)
	if err != nil {
		l.t.Fatal(err)
	}
	l.bundles[n], l.keys[n] = b, keys
	return b
}

// edgeOpts configures startEdge; zero values take the engine's defaults.
type edgeOpts struct {
	clock          ptp.Clock // [the true clock, ±1 µs]
	unicast        bool      // serve unicast subscribers on edgeAddr
	rounds, repeat int
	periods        []uint64     // bundles added before Run
	logger         *slog.Logger // [discard]
	// nowhere sends to no socket: the sends are only recorded (FirstSend),
	// for a control whose releases must reach no one.
	nowhere bool
	// The unicast server's fan-out sockets [1] and subscriptions per IP
	// address [1<<16], and a wrapper around it as the edge's sender.
	senders, maxPerAddress int
	wrapUnicast            func(edge.Sender) edge.Sender
	// sessions changes the unicast server's session configuration.
	sessions func(*unicast.SessionConfig)
}

// runningEdge is an edge running on its host until stop.
type runningEdge struct {
	*edge.Edge
	Server *unicast.Server
	done   chan error
	stopFn func()

	mu        sync.Mutex
	reports   []edge.Report
	firstSend map[uint64]int64 // period → true time its first RELEASE went to a socket
}

// watch wraps a sender so that the true time at which each period's first
// RELEASE is handed to the kernel is recorded: taken before the send, it
// proves a release was not early whatever the edge's clock believed.
func (re *runningEdge) watch(s edge.Sender) edge.Sender {
	return intercept(s, func(typ wire.Type, dgs [][]byte) (int, error) {
		at := truth()
		re.mu.Lock()
		for _, d := range dgs {
			if h, err := wire.Peek(d); err == nil && h.Type == wire.TypeRelease {
				if _, ok := re.firstSend[h.Period]; !ok {
					re.firstSend[h.Period] = at
				}
			}
		}
		re.mu.Unlock()
		return s.Send(typ, dgs)
	})
}

// intercept returns a Sender whose Send is send and which keeps what else
// inner is to its edge: a unicast server still gets the edge's history
// (edge.CatchUpSender) and is still run by the edge (edge.RunSender).
func intercept(inner edge.Sender, send edge.SenderFunc) edge.Sender {
	return intercepted{inner, send}
}

type intercepted struct {
	inner edge.Sender
	send  edge.SenderFunc
}

func (s intercepted) Send(typ wire.Type, dgs [][]byte) (int, error) { return s.send(typ, dgs) }

func (s intercepted) SetHistory(h edge.History) {
	if c, ok := s.inner.(edge.CatchUpSender); ok {
		c.SetHistory(h)
	}
}

func (s intercepted) Run(ctx context.Context) error {
	if r, ok := s.inner.(edge.RunSender); ok {
		return r.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

// FirstSend returns the true time period n's first RELEASE was sent.
func (re *runningEdge) FirstSend(n uint64) (int64, bool) {
	re.mu.Lock()
	defer re.mu.Unlock()
	at, ok := re.firstSend[n]
	return at, ok
}

// startEdge starts edge i (host 1+i) with a multicast sender on the group
// and, if o.unicast, a unicast server; or, if o.nowhere, with neither.
func (l *lab) startEdge(i int, o edgeOpts) *runningEdge {
	l.t.Helper()
	h := l.edgeHost(i)
	if o.clock == nil {
		o.clock = offsetClock(0, time.Microsecond)
	}
	re := &runningEdge{done: make(chan error, 1), firstSend: map[uint64]int64{}}
	var senders []edge.Sender
	var closers []func() error
	open := func() error {
		s, err := udp.NewSender(group(h))
		if err != nil {
			return err
		}
		senders, closers = append(senders, re.watch(s)), append(closers, s.Close)
		if o.unicast {
			sc := unicast.SessionConfig{Streams: []uint32{stream}, MaxPerAddress: cmp.Or(o.maxPerAddress, 1<<16), MaxSubscribers: 1 << 17}
			if o.sessions != nil {
				o.sessions(&sc)
			}
			srv, err := unicast.NewServer(unicast.ServerConfig{
				Listen: l.edgeAddr(i), Clock: o.clock, Senders: cmp.Or(o.senders, 1), Sessions: sc,
			})
			if err != nil {
				return err
			}
			re.Server = srv
			var s edge.Sender = srv
			if o.wrapUnicast != nil {
				s = o.wrapUnicast(s)
			}
			senders, closers = append(senders, re.watch(s)), append(closers, srv.Close)
		}
		return nil
	}
	if o.nowhere {
		senders = append(senders, re.watch(edge.SenderFunc(func(_ wire.Type, dgs [][]byte) (int, error) { return len(dgs), nil })))
	} else if err := h.Do(open); err != nil {
		l.t.Fatalf("edge %d: %v", i, err)
	}
	e, err := edge.New(edge.Config{
		ID: uint32(i + 1), Clock: o.clock, Trusted: l.ring, Senders: senders,
		Lead: l.sched.Lead, Rounds: o.rounds, Repeat: o.repeat, Logger: o.logger,
		OnRelease: func(r edge.Report) { re.mu.Lock(); re.reports = append(re.reports, r); re.mu.Unlock() },
	})
	if err != nil {
		l.t.Fatal(err)
	}
	re.Edge = e
	for _, n := range o.periods {
		if err := e.Add(l.bundle(n)); err != nil {
			l.t.Fatalf("edge %d: add period %d: %v", i, n, err)
		}
	}
	re.run(l.t, closers)
	return re
}

// run runs the edge (and its unicast server) until stop, which also
// closes closers; the test's end stops it.
func (re *runningEdge) run(t *testing.T, closers []func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { re.done <- re.Edge.Run(ctx) }()
	var once sync.Once
	re.stopFn = func() {
		once.Do(func() {
			cancel()
			if err := <-re.done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("edge: %v", err)
			}
			for _, c := range closers {
				c()
			}
		})
	}
	t.Cleanup(re.stop)
}

// stop kills the edge: nothing more is sent and its sockets close.
func (re *runningEdge) stop() { re.stopFn() }

// Reports returns the releases the edge has reported so far.
func (re *runningEdge) Reports() []edge.Report {
	re.mu.Lock()
	defer re.mu.Unlock()
	return append([]edge.Report(nil), re.reports...)
}

// recorder is a receiver running on its host, recording every event.
type recorder struct {
	*receiver.Receiver
	stopFn func()

	mu     sync.Mutex
	events map[uint64]receiver.Event
	dups   int // events for a period already delivered
}

// multicast opens a group socket on h.
func (l *lab) multicast(h *netns.Host) receiver.Source {
	l.t.Helper()
	var c *udp.Conn
	err := h.Do(func() (err error) { c, err = udp.Listen(group(h)); return err })
	if err != nil {
		l.t.Fatalf("listen on %s: %v", h.Name, err)
	}
	return c
}

// subscribe subscribes from h to edge i by unicast, asking for catchUp
// released periods.
func (l *lab) subscribe(h *netns.Host, i, catchUp int) *subscriber.Client {
	l.t.Helper()
	var c *subscriber.Client
	err := h.Do(func() (err error) {
		c, err = subscriber.Dial(subscriber.Config{Edge: l.edgeAddr(i), Streams: []uint32{stream}, CatchUp: catchUp, Retry: 50 * time.Millisecond})
		return err
	})
	if err != nil {
		l.t.Fatalf("subscribe from %s to edge %d: %v", h.Name, i, err)
	}
	return c
}

// subscribed reports whether every client's subscription is up.
func subscribed(cs []*subscriber.Client) bool {
	return !slices.ContainsFunc(cs, func(c *subscriber.Client) bool { return !c.Subscribed() })
}

// startReceiver runs a receiver with the master key on srcs until the test
// ends or stop.
func (l *lab) startReceiver(srcs ...receiver.Source) *recorder {
	l.t.Helper()
	return l.startReceiverWith(nil, srcs...)
}

// startReceiverWith is startReceiver with the receiver's configuration
// changed by mod first (a shorter MaxAge, say), if mod is not nil.
func (l *lab) startReceiverWith(mod func(*receiver.Config), srcs ...receiver.Source) *recorder {
	l.t.Helper()
	rec := &recorder{events: map[uint64]receiver.Event{}}
	cfg := receiver.Config{
		Trusted: l.ring, Master: l.master, Streams: []uint32{stream},
		OnEvent: func(ev receiver.Event) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if _, ok := rec.events[ev.Period]; ok {
				rec.dups++
			}
			rec.events[ev.Period] = ev
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := receiver.New(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	rec.Receiver = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, srcs...) }()
	var once sync.Once
	rec.stopFn = func() {
		once.Do(func() {
			cancel()
			for _, s := range srcs {
				s.Close()
			}
			<-done
		})
	}
	l.t.Cleanup(rec.stop)
	return rec
}

func (rec *recorder) stop() { rec.stopFn() }

// Event returns the event for period n, if delivered.
func (rec *recorder) Event(n uint64) (receiver.Event, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ev, ok := rec.events[n]
	return ev, ok
}

// verdict is what one receiver saw of one period, judged against the
// origin's keys and the true clock.
type verdict struct {
	missing, early, late, wrongKeys int
}

// ok reports whether nothing happened that load cannot excuse: every
// period delivered, none early, every key the origin's. Late (opened after
// presentAt) is not among them: a receiver the machine's other work holds
// back opens late, and the suite reports it in its RESULT lines. "Missing"
// is judged only after waiting up to stragglers for such receivers.
func (v verdict) ok() bool { return v.missing == 0 && v.early == 0 && v.wrongKeys == 0 }

// stragglers is how long past a scenario's last presentAt a test waits for
// receivers that load has held back before it judges what they missed. The
// wait ends as soon as every receiver has everything, so it costs nothing
// when all is well; it is generous because the suite must not count a
// delayed receiver as one that lost a period.
const stragglers = 15 * time.Second

// judge checks every receiver's event for every period in periods: it was
// delivered, its kernel arrival is at or after releaseAt and before
// presentAt, and its keys are the origin's.
func (l *lab) judge(recs []*recorder, periods []uint64) verdict {
	var v verdict
	for _, rec := range recs {
		for _, n := range periods {
			ev, ok := rec.Event(n)
			switch {
			case !ok:
				v.missing++
			case l.earlyEvent(ev):
				v.early++
			case ev.Opened >= l.sched.At(n).PresentAt:
				v.late++
			}
			if ok && !slices.Equal(ev.Keys, l.keysOf(n)) {
				v.wrongKeys++
			}
		}
	}
	return v
}

// earlyEvent reports whether ev arrived or was opened before its period's
// releaseAt by the true clock.
func (l *lab) earlyEvent(ev receiver.Event) bool {
	at := l.sched.At(ev.Period).ReleaseAt
	return ev.Arrival < at || ev.Opened < at
}

// delivered reports whether every receiver in recs has every period in ps.
func delivered(recs []*recorder, ps []uint64) bool {
	for _, rec := range recs {
		for _, n := range ps {
			if _, ok := rec.Event(n); !ok {
				return false
			}
		}
	}
	return true
}

// keysOf returns the content keys the origin issued for period n.
func (l *lab) keysOf(n uint64) []seal.ContentKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[n]
}

// untilTrue sleeps until the true clock reaches at.
func untilTrue(at int64) {
	if d := time.Duration(at - truth()); d > 0 {
		time.Sleep(d)
	}
}

// periods returns [from, to).
func periods(from, to uint64) []uint64 {
	var ps []uint64
	for n := from; n < to; n++ {
		ps = append(ps, n)
	}
	return ps
}

// result logs a scenario's one-line result.
func result(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Log("RESULT " + t.Name() + ": " + fmt.Sprintf(format, args...))
}

// ipBatch runs ip commands, one an argument, inside h.
func ipBatch(t testing.TB, h *netns.Host, cmds ...string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", h.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s -batch: %v: %s", h.Name, err, out)
	}
}

// rcvBuf sets a socket's receive buffer to n bytes, past the system's
// limit (SO_RCVBUFFORCE, root), so that a flood or a fan-out pass holding
// the CPUs does not lose datagrams in the scheduler's pauses.
func rcvBuf(t testing.TB, c syscall.Conn, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) }); err != nil || serr != nil {
		t.Fatalf("receive buffer: %v", errors.Join(err, serr))
	}
}
