package unicast

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/netns/netnstest"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// sinkHost is a network namespace whose route to 198.18.0.0/15 leads into
// an ifb device, which drops every datagram: the send path is measured
// without any receive cost on this host.
func sinkHost(b testing.TB) *netns.Host {
	lab := netnstest.New(b, 1)
	h := lab.Host(0)
	ip, err := exec.LookPath("ip")
	if err != nil {
		b.Skip("no ip command")
	}
	script := strings.Join([]string{
		"link add ifb0 type ifb",
		"link set ifb0 txqueuelen 100000 up",
		"addr add 10.200.0.1/24 dev ifb0",
		"neigh add 10.200.0.2 lladdr 02:00:00:00:00:02 dev ifb0 nud permanent",
		"route add 198.18.0.0/15 via 10.200.0.2 dev ifb0",
	}, "\n") + "\n"
	cmd := exec.Command(ip, "-n", h.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Skipf("ifb sink unavailable: %v: %s", err, out)
	}
	return h
}

// sinkAddrs are n distinct destinations behind the sink.
func sinkAddrs(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)}), 7000)
	}
	return out
}

func releaseDatagram(b testing.TB) []byte {
	d := make([]byte, wire.ReleaseLen)
	r := wire.Release{Header: wire.Header{Stream: 1, Period: 1}, ReleaseAt: 1, SentAt: 1}
	if _, err := r.Encode(d); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkFanout sends one RELEASE to 10,000 and 50,000 subscribers and
// reports the rate (datagrams/s) and the time to the last subscriber, for:
//
//   - engine/senders=N: Server.Send with N sender sockets and threads;
//   - engine/senders=2/fifo: the same with the caller and the worker at
//     SCHED_FIFO ptp.DefaultPriority, as `embargo edge` releases (skipped
//     where the process may not): what it gains while other work loads
//     the machine;
//   - writeto: a plain loop of WriteToUDPAddrPort on one socket;
//   - sendmmsg: a bare unix.Syscall6(SYS_SENDMMSG) loop on one socket
//     over the same prepared headers, the ceiling one thread can reach.
//
// Root only: it builds a namespace whose route leads into an ifb device
// that drops everything.
func BenchmarkFanout(b *testing.B) {
	h := sinkHost(b)
	d := releaseDatagram(b)
	for _, n := range []int{10_000, 50_000} {
		dsts := sinkAddrs(n)
		for _, c := range []struct {
			name          string
			senders, prio int
		}{{"senders=1", 1, 0}, {"senders=2", 2, 0}, {"senders=2/fifo", 2, ptp.DefaultPriority}} {
			b.Run(fmt.Sprintf("subs=%d/engine/%s", n, c.name), func(b *testing.B) {
				if c.prio != 0 {
					if err := ptp.ProbeRealtime(c.prio); err != nil {
						b.Skipf("SCHED_FIFO not permitted: %v", err)
					}
				}
				var srv *Server
				err := h.Do(func() (err error) {
					srv, err = newSinkServer(c.senders, c.prio, dsts)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				srv.Send(wire.TypeRelease, [][]byte{d}) // build the plan outside the timing
				send := func() (err error) { _, err = srv.Send(wire.TypeRelease, [][]byte{d}); return err }
				if c.prio != 0 {
					plain := send
					send = func() (err error) {
						(ptp.Precise{Priority: c.prio}).Realtime(func() { err = plain() })
						return err
					}
				}
				fanout(b, n, send)
				if st := srv.Stats(); st.SendErrors != 0 {
					b.Fatalf("%d send errors", st.SendErrors)
				}
			})
		}
		b.Run(fmt.Sprintf("subs=%d/writeto", n), func(b *testing.B) {
			var c *net.UDPConn
			if err := h.Do(func() (err error) { c, err = net.ListenUDP("udp4", nil); return err }); err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			fanout(b, n, func() error {
				for _, a := range dsts {
					if _, err := c.WriteToUDPAddrPort(d, a); err != nil {
						return err
					}
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("subs=%d/sendmmsg", n), func(b *testing.B) {
			var fd int
			if err := h.Do(func() (err error) { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); return err }); err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			var pl plan
			pl.build(dsts, false)
			pl.iov.Base = &d[0]
			pl.iov.SetLen(len(d))
			all := pl.headers(make([]unix.Mmsghdr, len(dsts)), 0, len(dsts)) // every header prebuilt: the bare loop
			fanout(b, n, func() error {
				for hdrs := all; len(hdrs) > 0; {
					k := min(len(hdrs), maxBatch)
					r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(k), 0, 0, 0)
					if e != 0 {
						return e
					}
					hdrs = hdrs[r:]
				}
				return nil
			})
		})
	}
}

// fanout times send, which sends one datagram to n destinations.
func fanout(b *testing.B, n int, send func() error) {
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		if err := send(); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(float64(n)/per.Seconds(), "dgrams/s")
	b.ReportMetric(float64(per)/1e6, "ms-to-last")
}

// newSinkServer is a server on the sink host, its fan-out workers at
// SCHED_FIFO prio (0: normal), with n subscribers to stream
// 1 at dsts, subscribed through the session protocol.
func newSinkServer(senders, prio int, dsts []netip.AddrPort) (*Server, error) {
	clock := ptp.NewSim()
	srv, err := NewServer(ServerConfig{
		Listen: netip.MustParseAddrPort("0.0.0.0:0"), Senders: senders, Priority: prio, Clock: clock,
		Sessions: SessionConfig{Streams: []uint32{1}, MaxSubscribers: len(dsts), MaxPerAddress: 1},
	})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]byte, wire.MaxDatagram)
	hello := make([]byte, wire.HelloMinLen)
	if _, err := (&wire.Hello{PadLen: wire.HelloMinLen - wire.HeaderLen - wire.NonceLen}).Encode(hello); err != nil {
		return nil, err
	}
	sub := wire.Subscribe{KeyShare: testShare, Streams: []uint32{1}}
	buf := make([]byte, wire.MaxDatagram)
	for _, a := range dsts {
		var c wire.Cookie
		if err := c.Decode(srv.sessions.Handle(hello, a, now, out).Reply); err != nil {
			return nil, err
		}
		sub.Cookie = c.Cookie
		k, _ := sub.Encode(buf)
		if !srv.sessions.Handle(buf[:k], a, now, out).Subscribed {
			return nil, syscall.EINVAL
		}
	}
	return srv, nil
}

// BenchmarkPlanRebuild rebuilds a stream's fan-out plan of 50,000
// subscribers, as the first send after any change of the subscriber set
// does: a walk of the session table that writes one socket address per
// subscriber.
func BenchmarkPlanRebuild(b *testing.B) {
	const n = 50_000
	s := newSessions(b, func(c *SessionConfig) { c.MaxSubscribers = n; c.MaxPerAddress = n; c.SubscribeBurst = n })
	out, buf := make([]byte, wire.MaxDatagram), make([]byte, wire.MaxDatagram)
	h := hello(b)
	sub := &wire.Subscribe{KeyShare: testShare, Streams: []uint32{1}}
	var c wire.Cookie
	for i := range n {
		if err := c.Decode(s.Handle(h, addr(i), t0, out).Reply); err != nil {
			b.Fatal(err)
		}
		sub.Cookie = c.Cookie
		k, _ := sub.Encode(buf)
		if !s.Handle(buf[:k], addr(i), t0, out).Subscribed {
			b.Fatal("not subscribed")
		}
	}
	p := &planner{s: &Server{sessions: s}, plans: make(map[uint32]*plan)}
	b.ReportAllocs()
	for b.Loop() {
		s.gen.Add(1)
		if pl := p.plan(1); pl.n != n {
			b.Fatalf("plan of %d", pl.n)
		}
	}
}
