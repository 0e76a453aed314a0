//go:build linux

package faults

// Helpers of the attack scenarios (attack_test.go) that are not specific
// to them: a memory watch, the kernel's drop counters, a raw socket that
// forges source addresses, a per-address packet account taken on a host's
// interface, static neighbours, TCP from inside a host, random bytes, and
// checks of what receivers delivered. Everything is prefixed "atk" so that
// it cannot collide with another scenario's helpers.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	xbpf "golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/syncbuf"
	"github.com/embargo-live/embargo/internal/wait"
)

const atkMiB = 1 << 20

// atkMem samples the process's memory while an attack runs: the peak of
// the heap in use and of the memory obtained from the OS, against a
// baseline taken after a collection before the attack.
type atkMem struct {
	base              runtime.MemStats
	peakHeap, peakSys uint64 // written by the sampler until done
	stop, done        chan struct{}
}

// atkMemReport is what atkMem saw. Retained is the live heap after the
// attack and a collection, minus the live heap before: what a leak per
// datagram would grow.
type atkMemReport struct {
	BaseHeap, PeakHeap, PeakSys uint64
	Retained                    int64
}

func atkWatchMemory() *atkMem {
	runtime.GC()
	m := &atkMem{stop: make(chan struct{}), done: make(chan struct{})}
	runtime.ReadMemStats(&m.base)
	m.peakHeap, m.peakSys = m.base.HeapInuse, m.base.Sys
	go func() {
		defer close(m.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var s runtime.MemStats
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&s)
			m.peakHeap, m.peakSys = max(m.peakHeap, s.HeapInuse), max(m.peakSys, s.Sys)
		}
	}()
	return m
}

// finish stops the sampling, collects, and reports.
func (m *atkMem) finish() atkMemReport {
	close(m.stop)
	<-m.done
	runtime.GC()
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	return atkMemReport{
		BaseHeap: m.base.HeapInuse, PeakHeap: max(m.peakHeap, s.HeapInuse), PeakSys: max(m.peakSys, s.Sys),
		Retained: int64(s.HeapAlloc) - int64(m.base.HeapAlloc),
	}
}

// Growth is the peak heap in use over the baseline.
func (r atkMemReport) Growth() int64 { return int64(r.PeakHeap) - int64(r.BaseHeap) }

// check fails t if the attack cost more than atkMaxGrowth or left more
// than atkMaxRetained behind.
func (r atkMemReport) check(t *testing.T) {
	t.Helper()
	if r.Growth() > atkMaxGrowth || r.Retained > atkMaxRetained {
		t.Errorf("memory: %v; want growth under %d MiB and retained under %d MiB", r, atkMaxGrowth/atkMiB, atkMaxRetained/atkMiB)
	}
}

func (r atkMemReport) String() string {
	return fmt.Sprintf("heap peak %.1f MiB (%+.1f over %.1f), retained %+.1f MiB, sys peak %.1f MiB",
		float64(r.PeakHeap)/atkMiB, float64(r.Growth())/atkMiB, float64(r.BaseHeap)/atkMiB, float64(r.Retained)/atkMiB, float64(r.PeakSys)/atkMiB)
}

// atkUDPDrops sums the kernel's drop counter (the last column of
// /proc/net/udp) over h's UDP sockets bound to port: datagrams that
// reached the host but found the socket's buffer full.
func atkUDPDrops(t testing.TB, h *netns.Host, port uint16) uint64 {
	t.Helper()
	var sum uint64
	suffix := fmt.Sprintf(":%04X", port)
	err := h.Do(func() error {
		// thread-self: /proc/net follows the reading thread's namespace
		// only through it.
		b, err := os.ReadFile("/proc/thread-self/net/udp")
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) < 13 || !strings.HasSuffix(f[1], suffix) {
				continue // the heading, or another port
			}
			n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
			if err != nil {
				return fmt.Errorf("/proc/net/udp drops %q: %v", f[len(f)-1], err)
			}
			sum += n
		}
		return nil
	})
	if err != nil {
		t.Fatalf("udp drops on %s: %v", h.Name, err)
	}
	return sum
}

// atkBacklogDrops is the machine's count of packets dropped because a
// CPU's input backlog was full (the second column of
// /proc/net/softnet_stat, summed): those never reach any socket or filter.
func atkBacklogDrops(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatalf("softnet_stat: %v", err)
	}
	var sum uint64
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			t.Fatalf("softnet_stat %q: %v", line, err)
		}
		sum += n
	}
	return sum
}

// atkSpoofer sends IPv4/UDP datagrams with any source address from a lab
// host: a raw socket whose IP header the caller writes (IPPROTO_RAW
// implies IP_HDRINCL). The kernel fills in the header checksum, the total
// length and the identification; the UDP checksum is left 0 (none), which
// IPv4 allows. Datagrams must fit the link's MTU: raw sockets do not
// fragment.
type atkSpoofer struct {
	fd  int
	dst netip.AddrPort
	sa  unix.SockaddrInet4
	pkt []byte
}

func atkNewSpoofer(t testing.TB, h *netns.Host, dst netip.AddrPort) *atkSpoofer {
	t.Helper()
	s := &atkSpoofer{dst: dst, sa: unix.SockaddrInet4{Addr: dst.Addr().As4()}, pkt: make([]byte, 1500)}
	err := h.Do(func() (err error) {
		s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		t.Fatalf("raw socket on %s: %v", h.Name, err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// send sends payload to the spoofer's destination as if from from.
func (s *atkSpoofer) send(from netip.AddrPort, payload []byte) error {
	n := 20 + 8 + len(payload)
	if n > len(s.pkt) {
		return fmt.Errorf("spoof: %d-byte datagram over the MTU", len(payload))
	}
	p := s.pkt[:n]
	clear(p[:28])
	p[0] = 0x45 // version 4, 20-byte header
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[8] = 64 // TTL
	p[9] = unix.IPPROTO_UDP
	src, dst := from.Addr().As4(), s.dst.Addr().As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[20:], from.Port())
	binary.BigEndian.PutUint16(p[22:], s.dst.Port())
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return unix.Sendto(s.fd, p, 0, &s.sa)
}

// atkCapture accounts, on one host's lab interface, for the UDP traffic of
// one port: the payload bytes each peer address sent to the port and the
// bytes the port sent to it, and the message types sent, taken from an
// AF_PACKET socket behind a classic BPF filter (UDP to or from the port,
// first fragments only, 64 bytes kept). It sees what goes on the wire:
// datagrams a full socket buffer then drops count as received, datagrams
// to an unresolved neighbour are never sent.
type atkCapture struct {
	t       testing.TB
	fd      int
	port    uint16
	stop    atomic.Bool
	stopped time.Time // set before stop
	done    chan struct{}
	once    sync.Once
	acct    atkCaptureStats // written by read until done
}

// atkCaptureStats is a capture's account.
type atkCaptureStats struct {
	In, Out map[netip.Addr]uint64
	OutMsgs map[netip.Addr]*[256]uint64 // datagrams sent, by message type byte
	Dropped uint32                      // the kernel's count of packets the capture missed
}

func atkStartCapture(t testing.TB, h *netns.Host, port uint16) *atkCapture {
	t.Helper()
	const snap = 64
	prog, err := xbpf.Assemble([]xbpf.Instruction{
		/* 0 */ xbpf.LoadExtension{Num: xbpf.ExtProto},
		/* 1 */ xbpf.JumpIf{Cond: xbpf.JumpNotEqual, Val: unix.ETH_P_IP, SkipTrue: 9},
		/* 2 */ xbpf.LoadAbsolute{Off: 9, Size: 1},
		/* 3 */ xbpf.JumpIf{Cond: xbpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: 7},
		/* 4 */ xbpf.LoadAbsolute{Off: 6, Size: 2},
		/* 5 */ xbpf.JumpIf{Cond: xbpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 5},
		/* 6 */ xbpf.LoadMemShift{Off: 0},
		/* 7 */ xbpf.LoadIndirect{Off: 0, Size: 2},
		/* 8 */ xbpf.JumpIf{Cond: xbpf.JumpEqual, Val: uint32(port), SkipTrue: 3},
		/* 9 */ xbpf.LoadIndirect{Off: 2, Size: 2},
		/* 10 */ xbpf.JumpIf{Cond: xbpf.JumpEqual, Val: uint32(port), SkipTrue: 1},
		/* 11 */ xbpf.RetConstant{Val: 0},
		/* 12 */ xbpf.RetConstant{Val: snap},
	})
	if err != nil {
		t.Fatal(err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	c := &atkCapture{t: t, port: port, done: make(chan struct{}),
		acct: atkCaptureStats{In: map[netip.Addr]uint64{}, Out: map[netip.Addr]uint64{}, OutMsgs: map[netip.Addr]*[256]uint64{}}}
	all := atkHtons(unix.ETH_P_ALL)
	err = h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Ifname)
		if err != nil {
			return err
		}
		// Protocol 0 takes nothing until the filter is on and the socket bound.
		if c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return errors.Join(
			unix.SetsockoptSockFprog(c.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}),
			unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256*atkMiB),
			unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000}),
			unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index}),
		)
	})
	if err != nil {
		if c.fd > 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s: %v", h.Name, err)
	}
	go c.read()
	t.Cleanup(func() { c.finish() })
	return c
}

func atkHtons(v uint16) uint16 { return v<<8 | v>>8 }

// read accounts for packets until stop and a quiet moment (a receive
// timeout: the queue is drained); it allocates nothing per packet, so
// that it does not weigh on the memory it is measured beside.
func (c *atkCapture) read() {
	defer close(c.done)
	var buf [128]byte
	var sa unix.RawSockaddrLinklayer
	for {
		salen := uint32(unsafe.Sizeof(sa))
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(c.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			0, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
		stopping := c.stop.Load()
		switch {
		case stopping && time.Since(c.stopped) > 2*time.Second:
			return // never quiet: what is still queued goes uncounted
		case errno == unix.EAGAIN && stopping:
			return
		case errno == unix.EAGAIN || errno == unix.EINTR:
			continue
		case errno != 0:
			return
		}
		p := buf[:n]
		if len(p) < 20 || p[0]>>4 != 4 {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 {
			continue
		}
		src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		u := p[ihl:]
		sport, dport := binary.BigEndian.Uint16(u[0:]), binary.BigEndian.Uint16(u[2:])
		size := uint64(binary.BigEndian.Uint16(u[4:])) - 8
		a := &c.acct
		switch {
		case sa.Pkttype == unix.PACKET_OUTGOING && sport == c.port:
			a.Out[dst] += size
			m := a.OutMsgs[dst]
			if m == nil {
				m = new([256]uint64)
				a.OutMsgs[dst] = m
			}
			if len(u) > 8+5 {
				m[u[8+5]]++
			}
		case sa.Pkttype != unix.PACKET_OUTGOING && dport == c.port:
			a.In[src] += size
		}
	}
}

// finish stops the capture once what it has queued is read (idempotent)
// and returns its account.
func (c *atkCapture) finish() atkCaptureStats {
	c.once.Do(func() {
		c.stopped = time.Now()
		c.stop.Store(true)
		<-c.done
		st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		unix.Close(c.fd)
		if err != nil {
			c.t.Errorf("capture statistics: %v", err) // what it missed is unknown
			return
		}
		c.acct.Dropped = st.Drops
	})
	return c.acct
}

// atkNeighbors gives h permanent neighbour entries for addrs, all at the
// hardware address of owner's lab interface, so that what h sends to an
// address no host owns still goes on the wire to owner (to be counted)
// instead of waiting for an ARP answer that never comes.
func atkNeighbors(t testing.TB, h *netns.Host, addrs []netip.Addr, owner *netns.Host) {
	t.Helper()
	var mac net.HardwareAddr
	err := owner.Do(func() error {
		ifi, err := net.InterfaceByName(owner.Ifname)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	})
	if err != nil {
		t.Fatalf("interface of %s: %v", owner.Name, err)
	}
	var script []string
	for _, a := range addrs {
		script = append(script, fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, mac, h.Ifname))
	}
	ipBatch(t, h, script...)
}

// atkDialer dials TCP from inside h: an http.Transport's DialContext for a
// client on that host.
func atkDialer(h *netns.Host) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := h.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// atkServe serves srv on addr inside h, over TLS if srv has a TLSConfig,
// until the test ends. It returns the server's error log.
func atkServe(t testing.TB, h *netns.Host, addr netip.AddrPort, srv *http.Server) *syncbuf.Buffer {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s %v: %v", h.Name, addr, err)
	}
	errLog := &syncbuf.Buffer{}
	srv.ErrorLog = log.New(errLog, "", 0)
	served := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	t.Cleanup(func() { srv.Close(); <-served })
	return errLog
}

// atkNoise draws a flood's random choices and bytes.
type atkNoise struct {
	rng   *rand.Rand
	bytes *rand.ChaCha8 // fresh random bytes
	pool  []byte        // random bytes to cut garbage from: cheaper than drawing them
}

func atkNewNoise(seed uint64) atkNoise {
	n := atkNoise{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		bytes: rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 9}),
		pool:  make([]byte, 1<<16),
	}
	n.bytes.Read(n.pool)
	return n
}

// fill fills b with random bytes cut from the pool.
func (n atkNoise) fill(b []byte) { copy(b, n.pool[n.rng.IntN(len(n.pool)-len(b)):]) }

// garbage writes 1 to 1400 random bytes into b, never starting with the
// protocol's magic.
func (n atkNoise) garbage(b []byte) []byte {
	b = b[:1+n.rng.IntN(1400)]
	n.fill(b)
	if b[0] == 'E' {
		b[0] = 'e'
	}
	return b
}

// atkEncode encodes m into b's capacity; the attacks' messages always fit.
func atkEncode(b []byte, m interface{ Encode([]byte) (int, error) }) []byte {
	n, err := m.Encode(b[:cap(b)])
	if err != nil {
		panic(err)
	}
	return b[:n]
}

// atkReady waits until every receiver has delivered a genuine period, and
// returns the first period released after.
func atkReady(t *testing.T, l *lab, recs []*recorder) uint64 {
	t.Helper()
	wait.For(t, 10*time.Second, "a first genuine period at every receiver", func() bool {
		return !slices.ContainsFunc(recs, func(r *recorder) bool { return r.Stats().Delivered == 0 })
	})
	return l.sched.Current(truth()) + 1
}

// atkForeign lists the periods recs delivered that are not genuine: not
// issued by the lab's origin, delivered with other keys, or arriving or
// opened before their release. It also returns how many periods were delivered
// twice.
func atkForeign(l *lab, recs ...*recorder) (foreign []uint64, dups int) {
	for _, rec := range recs {
		rec.mu.Lock()
		for n, ev := range rec.events {
			keys := l.keysOf(n)
			if keys == nil || ev.Stream != stream || !slices.Equal(ev.Keys, keys) || l.earlyEvent(ev) {
				foreign = append(foreign, n)
			}
		}
		dups += rec.dups
		rec.mu.Unlock()
	}
	return foreign, dups
}
