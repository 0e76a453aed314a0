package unicast_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// These are the package's end-to-end tests: real sockets on loopback, the
// system clock, real receivers. Each holds the machine
// (realtime.Exclusive), asserts only what load cannot excuse — nothing
// early, nothing missed, keys right, counts — and waits for events, with
// patience as the bound that keeps a broken run from hanging, never as a
// figure under test. The session and edge logic is tested in virtual time
// (sessions_time_test.go, package edge).

// patience bounds every wait for an event.
const patience = 20 * time.Second

// world is an origin, a clock every role shares, and a schedule of
// periods from a lead ahead.
type world struct {
	origin *origin.Origin
	master []byte
	ring   *seal.KeyRing
	clock  ptp.Clock
	sched  origin.Schedule
}

func newWorld(t *testing.T, period time.Duration) *world {
	realtime.Exclusive(t)
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	clock, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	now, _ := clock.Now()
	lead := period * 8 / 10
	return &world{origin: o, master: master, ring: seal.NewKeyRing(o.PublicKey()), clock: clock,
		sched: origin.Schedule{Epoch: now.Latest + int64(lead) + int64(100*time.Millisecond), Period: period, Lead: lead, PresentDelay: period}}
}

// node is one edge with its unicast server.
type node struct {
	e      *edge.Edge
	srv    *unicast.Server
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func (w *world) startEdge(t *testing.T, listen netip.AddrPort, sessions unicast.SessionConfig, mod ...func(*unicast.ServerConfig)) *node {
	var n node
	sessions.Streams = []uint32{1}
	cfg := unicast.ServerConfig{Listen: listen, Senders: 2, Sessions: sessions, Clock: w.clock}
	for _, m := range mod {
		m(&cfg)
	}
	srv, err := unicast.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{Clock: w.clock, Trusted: w.ring, Senders: []edge.Sender{srv}, Lead: w.sched.Lead, Repeat: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.e, n.srv, n.cancel = e, srv, cancel
	n.done.Go(func() { e.Run(ctx) })
	t.Cleanup(n.stop)
	return &n
}

func (n *node) stop() {
	n.cancel()
	n.done.Wait()
}

// issue adds periods [from, to) to every edge.
func (w *world) issue(t *testing.T, from, to uint64, nodes ...*node) {
	for p := from; p < to; p++ {
		keys, err := w.origin.NewContentKeys(1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := w.origin.Keys(1, p, w.sched.At(p), keys)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if err := n.e.Add(b); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// device is a receiver subscribed by unicast to some edges.
type device struct {
	r       *receiver.Receiver
	clients []*subscriber.Client
	conns   []*vanishing
	mu      sync.Mutex
	events  map[uint64]receiver.Event
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

func (w *world) device(t *testing.T, catchUp int, edges ...netip.AddrPort) *device {
	d := &device{events: map[uint64]receiver.Event{}}
	r, err := receiver.New(receiver.Config{
		Trusted: w.ring, Master: w.master, Streams: []uint32{1},
		OnEvent: func(ev receiver.Event) { d.mu.Lock(); d.events[ev.Period] = ev; d.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	d.r = r
	var srcs []receiver.Source
	for _, e := range edges {
		conn := dialVanishing(t, e)
		c, err := subscriber.New(subscriber.Config{Edge: e, Streams: []uint32{1}, CatchUp: catchUp, Retry: 20 * time.Millisecond, MaxRetry: 200 * time.Millisecond}, conn)
		if err != nil {
			t.Fatal(err)
		}
		d.clients, d.conns = append(d.clients, c), append(d.conns, conn)
		srcs = append(srcs, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.done.Go(func() { r.Run(ctx, srcs...) })
	t.Cleanup(func() { cancel(); d.done.Wait() })
	return d
}

// vanishing is a subscriber's UDP socket that can stop sending, as a device
// that vanished does: no LEAVE, no keepalives, while the edge still sends.
type vanishing struct {
	*udp.Reader
	c    *net.UDPConn
	gone atomic.Bool
}

func dialVanishing(t *testing.T, edge netip.AddrPort) *vanishing {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(edge))
	if err != nil {
		t.Fatal(err)
	}
	r, err := udp.NewReader(c)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return &vanishing{Reader: r, c: c}
}

func (v *vanishing) Write(b []byte) (int, error) {
	if v.gone.Load() {
		return len(b), nil // lost on the way, as to a device that is gone
	}
	return v.c.Write(b)
}

func (d *device) got(p uint64) (receiver.Event, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev, ok := d.events[p]
	return ev, ok
}

func loopback(*testing.T) netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:0") }

// checkPeriods asserts every device got every period in [from, to), none
// before its releaseAt.
func (w *world) checkPeriods(t *testing.T, devs []*device, from, to uint64) {
	t.Helper()
	// Deliveries trail the edge's release report by a little (much more on
	// a loaded machine): wait for them, then judge.
	wait.Until(patience, func() bool {
		for _, d := range devs {
			for p := from; p < to; p++ {
				if _, ok := d.got(p); !ok {
					return false
				}
			}
		}
		return true
	})
	for i, d := range devs {
		for p := from; p < to; p++ {
			ev, ok := d.got(p)
			if !ok {
				t.Errorf("device %d missed period %d; stats %+v", i, p, d.r.Stats())
				continue
			}
			if ev.Arrival < w.sched.At(p).ReleaseAt {
				t.Errorf("device %d: period %d arrived %v before releaseAt", i, p, time.Duration(w.sched.At(p).ReleaseAt-ev.Arrival))
			}
		}
	}
}

func TestUnicastEndToEnd(t *testing.T) {
	w := newWorld(t, 300*time.Millisecond)
	n := w.startEdge(t, loopback(t), unicast.SessionConfig{})
	var devs []*device
	for range 30 {
		devs = append(devs, w.device(t, 0, n.srv.Addr()))
	}
	wait.For(t, patience, "subscriptions", func() bool { return n.srv.Sessions().Stats().Subscribers == 30 })
	w.issue(t, 0, 3, n)
	wait.For(t, patience, "releases", func() bool { return n.e.Stats().Released == 3 })
	w.checkPeriods(t, devs, 0, 3)
	if st := n.srv.Stats(); st.SendErrors != 0 || st.Sent == 0 {
		t.Errorf("server stats %+v", st)
	}
}

// TestNaiveBaseline: the benchmarks' baseline (one sendto per subscriber)
// delivers the same periods, so comparisons measure speed alone.
func TestNaiveBaseline(t *testing.T) {
	w := newWorld(t, 300*time.Millisecond)
	n := w.startEdge(t, loopback(t), unicast.SessionConfig{}, func(c *unicast.ServerConfig) { c.Naive = true })
	devs := []*device{w.device(t, 0, n.srv.Addr()), w.device(t, 0, n.srv.Addr()), w.device(t, 0, n.srv.Addr())}
	wait.For(t, patience, "subscriptions", func() bool { return n.srv.Sessions().Stats().Subscribers == 3 })
	w.issue(t, 0, 2, n)
	wait.For(t, patience, "releases", func() bool { return n.e.Stats().Released == 2 })
	w.checkPeriods(t, devs, 0, 2)
	if st := n.srv.Stats(); st.Sent == 0 || st.SendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestCatchUp: a device that subscribes after periods were released gets
// the last ones it asked for at once, and the next period on time.
func TestCatchUp(t *testing.T) {
	w := newWorld(t, 250*time.Millisecond)
	n := w.startEdge(t, loopback(t), unicast.SessionConfig{})
	w.issue(t, 0, 5, n)
	wait.For(t, patience, "three releases", func() bool { return n.e.Stats().Released == 3 })
	late := w.device(t, 2, n.srv.Addr())
	wait.For(t, patience, "catch-up", func() bool { _, a := late.got(1); _, b := late.got(2); return a && b })
	if _, ok := late.got(0); ok {
		t.Error("caught up on more periods than asked")
	}
	if _, ok := late.got(3); ok && time.Duration(w.sched.At(3).ReleaseAt-ptp.SystemTAI()) > 0 {
		t.Error("period 3 delivered before its release")
	}
	wait.For(t, patience, "all releases", func() bool { return n.e.Stats().Released == 5 })
	w.checkPeriods(t, []*device{late}, 1, 5)
	if n.srv.Stats().CatchUp == 0 {
		t.Error("no catch-up datagrams counted")
	}
}

// TestFailover: devices subscribed to two edges keep getting every period
// when one edge dies: the periods after its death come from the other
// alone.
func TestFailover(t *testing.T) {
	w := newWorld(t, 300*time.Millisecond)
	a := w.startEdge(t, loopback(t), unicast.SessionConfig{})
	b := w.startEdge(t, loopback(t), unicast.SessionConfig{})
	var devs []*device
	for range 10 {
		devs = append(devs, w.device(t, 0, a.srv.Addr(), b.srv.Addr()))
	}
	wait.For(t, patience, "subscriptions", func() bool {
		return a.srv.Sessions().Stats().Subscribers == 10 && b.srv.Sessions().Stats().Subscribers == 10
	})
	w.issue(t, 0, 1, a, b)
	wait.For(t, patience, "first release", func() bool { return a.e.Stats().Released == 1 })
	a.stop()
	// a holds periods 1 and 2 but, stopped, never sends them.
	w.issue(t, 1, 3, a, b)
	wait.For(t, patience, "releases by b", func() bool { return b.e.Stats().Released == 3 })
	w.checkPeriods(t, devs, 0, 3)
	if st := a.e.Stats(); st.Released != 1 || st.Pending != 2 {
		t.Errorf("edge a after it was stopped: %+v", st)
	}
}

// TestEdgeRestart: after an edge restarts on the same address, devices
// learn it from a refused keepalive, subscribe again and get the next
// periods.
func TestEdgeRestart(t *testing.T) {
	w := newWorld(t, 300*time.Millisecond)
	short := unicast.SessionConfig{Keepalive: 50 * time.Millisecond, Expiry: 500 * time.Millisecond}
	a := w.startEdge(t, loopback(t), short)
	addr := a.srv.Addr()
	d := w.device(t, 0, addr)
	c := d.clients[0]
	wait.For(t, patience, "subscription", func() bool { return a.srv.Sessions().Stats().Subscribers == 1 && c.Subscribed() })
	a.stop()
	b := w.startEdge(t, addr, short)
	// The server counts a subscription before the client has read its
	// SUBSCRIBED: wait for both sides.
	wait.For(t, patience, "re-subscription", func() bool {
		st := c.Stats()
		return b.srv.Sessions().Stats().Subscribers == 1 && c.Subscribed() && st.Restarts > 0 && st.Subscriptions >= 2
	})
	w.issue(t, 0, 2, b)
	wait.For(t, patience, "releases", func() bool { return b.e.Stats().Released == 2 })
	w.checkPeriods(t, []*device{d}, 0, 2)
}

// TestLeaveAndExpiry: a closing client leaves (not expires); one that
// vanishes is dropped by expiry. The expiry is long against the keepalive,
// so a loaded machine does not expire a live client.
func TestLeaveAndExpiry(t *testing.T) {
	w := newWorld(t, time.Second)
	n := w.startEdge(t, loopback(t), unicast.SessionConfig{Keepalive: 100 * time.Millisecond, Expiry: 2 * time.Second})
	c, err := subscriber.Dial(subscriber.Config{Edge: n.srv.Addr(), Streams: []uint32{1}, Retry: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { // ReadBatch drives the handshake's answers
		ms := make([]datagram.Message, 4)
		for i := range ms {
			ms[i].Buf = make([]byte, 2000)
		}
		for {
			if _, err := c.ReadBatch(ms); err != nil {
				return
			}
		}
	}()
	// Both sides must know the session: a client that has not yet read its
	// SUBSCRIBED has nothing to leave.
	wait.For(t, patience, "subscription", func() bool { return n.srv.Sessions().Stats().Subscribers == 1 && c.Subscribed() })
	c.Close()
	wait.For(t, patience, "leave", func() bool { return n.srv.Sessions().Stats().Subscribers == 0 })
	if st := n.srv.Sessions().Stats(); st.Leaves != 1 || st.Expired != 0 {
		t.Fatalf("after the LEAVE: %d leaves, %d expired", st.Leaves, st.Expired)
	}

	g := w.device(t, 0, n.srv.Addr())
	wait.For(t, patience, "subscription", func() bool { return n.srv.Sessions().Stats().Subscribers == 1 })
	g.conns[0].gone.Store(true) // the device vanishes: no LEAVE, no keepalives
	wait.For(t, patience, "expiry", func() bool { return n.srv.Sessions().Stats().Subscribers == 0 })
	if st := n.srv.Sessions().Stats(); st.Expired != 1 || st.Leaves != 1 {
		t.Errorf("after the device vanished: %d expired, %d leaves", st.Expired, st.Leaves)
	}
}

func TestUnicastIPv6(t *testing.T) {
	w := newWorld(t, 300*time.Millisecond)
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
	n := w.startEdge(t, netip.MustParseAddrPort("[::1]:0"), unicast.SessionConfig{})
	devs := []*device{w.device(t, 0, n.srv.Addr()), w.device(t, 0, n.srv.Addr())}
	wait.For(t, patience, "subscriptions", func() bool { return n.srv.Sessions().Stats().Subscribers == 2 })
	w.issue(t, 0, 2, n)
	wait.For(t, patience, "releases", func() bool { return n.e.Stats().Released == 2 })
	w.checkPeriods(t, devs, 0, 2)
}

// futureHistory claims a period as released whose releaseAt is an hour
// away, as a buggy or tampered history might, and announces it too.
type futureHistory struct {
	b *edge.Released
}

func (h futureHistory) Released(uint32) []*edge.Released { return []*edge.Released{h.b} }
func (h futureHistory) Announced(uint32) [][]byte        { return h.b.Shards }

// futureServer runs a server (configured by mod) whose history claims
// period 9, released an hour from now; it returns the server and the
// number of the period's ANNOUNCE shards.
func futureServer(t *testing.T, w *world, mod func(*unicast.ServerConfig)) (*unicast.Server, uint64) {
	keys, _ := w.origin.NewContentKeys(1)
	at := origin.Instants{ReleaseAt: ptp.SystemTAI() + int64(time.Hour), PresentAt: ptp.SystemTAI() + int64(time.Hour)}
	b, err := w.origin.Keys(1, 9, at, keys)
	if err != nil {
		t.Fatal(err)
	}
	rel := make([]byte, wire.ReleaseLen)
	if _, err := (&wire.Release{Header: wire.Header{Stream: 1, Period: 9}, RK: b.RK, ReleaseAt: at.ReleaseAt, SentAt: at.ReleaseAt}).Encode(rel); err != nil {
		t.Fatal(err)
	}
	cfg := unicast.ServerConfig{Listen: loopback(t), Senders: 1, Clock: w.clock, Sessions: unicast.SessionConfig{Streams: []uint32{1}}}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := unicast.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	catchUp := append([]byte(nil), rel...)
	if err := wire.AddFlags(catchUp, wire.FlagCatchUp); err != nil {
		t.Fatal(err)
	}
	srv.SetHistory(futureHistory{&edge.Released{Bundle: b, Release: rel, CatchUp: catchUp}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, uint64(len(b.Shards))
}

// TestCatchUpNeverEarly: catch-up re-checks every period against the
// clock and sends no RELEASE before its releaseAt, whatever the history
// says: only the period's ANNOUNCE goes out, which alone delivers nothing.
func TestCatchUpNeverEarly(t *testing.T) {
	w := newWorld(t, time.Second)
	srv, n := futureServer(t, w, nil)
	d := w.device(t, 16, srv.Addr())
	// One catch-up, sent whole by the catch-up goroutine: once the device
	// has its datagrams and the server counted them, it is over.
	wait.For(t, patience, "the catch-up ANNOUNCE", func() bool { return d.clients[0].Stats().Data >= n && srv.Stats().CatchUp >= n })
	if _, ok := d.got(9); ok {
		t.Fatal("catch-up released a period an hour early")
	}
	if st := srv.Stats(); st.CatchUp != n {
		t.Fatalf("%d catch-up datagrams sent, want the %d of the ANNOUNCE alone", st.CatchUp, n)
	}
}

// TestCatchUpBudget: a catch-up larger than its address's budget is not
// sent, and is counted by reason; the subscription stands.
func TestCatchUpBudget(t *testing.T) {
	w := newWorld(t, time.Second)
	srv, _ := futureServer(t, w, func(c *unicast.ServerConfig) { c.CatchUpPerAddress = 100 })
	d := w.device(t, 16, srv.Addr())
	// The server counts the refusal as it subscribes the client; the
	// client is subscribed once SUBSCRIBED reaches it, which may be later.
	wait.For(t, patience, "the catch-up refused and the client subscribed", func() bool {
		return srv.Stats().CatchUpRefused["address-budget"] == 1 && d.clients[0].Subscribed()
	})
	if st := srv.Stats(); st.CatchUp != 0 || st.Sessions.Subscribers != 1 {
		t.Fatalf("sent %d catch-up datagrams, %d subscribers; want 0, 1", st.CatchUp, st.Sessions.Subscribers)
	}
}

// TestSocketFailureEndsEdge: when the unicast server's sockets fail under
// a running edge (closed here), the edge stops with an error that names
// the server's address, rather than releasing to nobody.
func TestSocketFailureEndsEdge(t *testing.T) {
	realtime.Exclusive(t)
	o, _, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	clock := ptp.NewSim()
	srv, err := unicast.NewServer(unicast.ServerConfig{Listen: loopback(t), Senders: 2, Clock: clock, Sessions: unicast.SessionConfig{Streams: []uint32{1}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{Clock: clock, Trusted: seal.NewKeyRing(o.PublicKey()), Senders: []edge.Sender{srv}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(context.Background()) }()
	srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), srv.Addr().String()) {
			t.Errorf("edge.Run returned %v, want net.ErrClosed naming %v", err, srv.Addr())
		}
	case <-time.After(patience):
		t.Fatal("edge.Run still running after its unicast server's sockets closed")
	}
}

// TestSecondServerOnAddressFails: a second server (another edge) on an
// address one already serves fails with "address already in use", though
// every server's own sockets share the address through SO_REUSEPORT. It
// used to bind beside the first silently, and each took half of the
// subscribers' traffic.
func TestSecondServerOnAddressFails(t *testing.T) {
	cfg := func(addr netip.AddrPort) unicast.ServerConfig {
		return unicast.ServerConfig{Listen: addr, Senders: 2, Clock: ptp.NewSim(), Sessions: unicast.SessionConfig{Streams: []uint32{1}}}
	}
	first, err := unicast.NewServer(cfg(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := unicast.NewServer(cfg(first.Addr()))
	if err == nil {
		second.Close()
		t.Fatalf("a second server on %v started", first.Addr())
	}
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second server: %v, want address already in use", err)
	}
	// Once the first is gone, the address is free again.
	first.Close()
	again, err := unicast.NewServer(cfg(first.Addr()))
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}

// TestPriorityWorkers: with a Priority, the release fan-out's worker
// threads run at SCHED_FIFO (so that a busy machine's ordinary threads
// cannot pre-empt them mid-release) and the announcement's do not; the
// threads leave real-time priority when the server closes.
func TestPriorityWorkers(t *testing.T) {
	if err := ptp.ProbeRealtime(ptp.DefaultPriority); err != nil {
		t.Skipf("SCHED_FIFO not permitted here (needs CAP_SYS_NICE): %v", err)
	}
	before := fifoThreads(t)
	srv, err := unicast.NewServer(unicast.ServerConfig{
		Listen: loopback(t), Senders: 3, Priority: ptp.DefaultPriority, Clock: ptp.NewSim(),
		Sessions: unicast.SessionConfig{Streams: []uint32{1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 3 sockets: 2 workers for the release, 2 for the announcements.
	wait.For(t, patience, "2 release workers at SCHED_FIFO", func() bool { return fifoThreads(t) == before+2 })
	srv.Close()
	wait.For(t, patience, "the workers back at normal priority", func() bool { return fifoThreads(t) == before })
}

// fifoThreads counts this process's threads at SCHED_FIFO (policy, field
// 41 of /proc/self/task/*/stat).
func fifoThreads(t *testing.T) int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 38 && fields[38] == "1" { // fields[0] is field 3
			n++
		}
	}
	return n
}
