//go:build linux

package faults

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/wire"
)

// A crowd is many unicast subscribers on one host, made through the real
// session protocol (HELLO, COOKIE, SUBSCRIBE, SUBSCRIBED, KEEPALIVE) from
// one UDP socket: member i is crowdAddr(i), an address of 198.18.0.0/15
// (RFC 2544's benchmarking block) that is local to the crowd host through
// one AnyIP route ("local 198.18.0.0/15 dev lo"), sent from with
// IP_PKTINFO. The crowd host has its own uplink to the edge host, which
// routes the block over it. What the edge fans out to the members
// (ANNOUNCE and RELEASE) is counted, per member and period, and dropped
// on the uplink by a tcx program (see countAt for which end), before the
// IP layer: the crowd's one socket sees session replies only.
var crowdNet = netip.MustParsePrefix("198.18.0.0/15")

const (
	crowdPort = 7000
	maxCrowd  = 1 << 17 // addresses in crowdNet
	// crowdWindow bounds the handshakes in flight. 128 subscribes 50,000
	// in about a second with no retry; 256 overflowed the edge's socket
	// buffer at its old size (208 KiB) and made hundreds retry.
	crowdWindow = 128
	crowdRTO    = 300 * time.Millisecond

	// The crowd's uplink to the edge host, a /30 of TEST-NET-1.
	crowdEdgeIf, crowdEdgeIP = "crowd0", "192.0.2.1"
	crowdIf, crowdIP         = "uplink0", "192.0.2.2"
)

// crowdAddr is member i's address.
func crowdAddr(i int) netip.AddrPort {
	b := crowdNet.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(i)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrPortFrom(netip.AddrFrom4(b), crowdPort)
}

// crowd is n subscribers to one edge.
type crowd struct {
	t     *testing.T
	edge  netip.AddrPort
	n     int
	conn  *net.UDPConn
	count *crowdCounter

	mu       sync.Mutex
	members  []member
	inflight map[int]struct{}
	refused  map[wire.Reason]int
	restarts int // handshakes started over (timeout or bad cookie)
	subs     atomic.Int64
	progress chan struct{} // a handshake finished

	keepalives, echoes, unknownSession, unexpected atomic.Int64
}

type member struct {
	phase   uint8  // phaseNone … phaseSubscribed
	tag     uint32 // names the current attempt in its nonces
	sent    time.Time
	session [wire.SessionIDLen]byte
	seq     uint32
}

const (
	phaseNone uint8 = iota
	phaseHello
	phaseSubscribe
	phaseSubscribed
)

// Where the crowd's counter sits.
type countAt int

const (
	// atCrowd counts on the crowd host, as datagrams arrive (tcx ingress
	// on its end of the uplink): what arrived. veth runs the receiving
	// side's input path inside the sender's transmit, on the sender's
	// CPU, so this bills the edge's fan-out for the crowd's receive work
	// (about a quarter of a pass's time on the two-core VM), which real
	// subscribers do on their own machines.
	atCrowd countAt = iota
	// atUplink counts on the edge host, as datagrams leave it for the
	// crowd's uplink (tcx egress), and drops them there: what the edge
	// put on the wire, at the edge's own price.
	atUplink
)

func (a countAt) String() string {
	if a == atCrowd {
		return "counted arriving at the crowd"
	}
	return "counted leaving the edge for the crowd"
}

// newCrowd links host h to the edge host by its own uplink, routes
// crowdNet over it, attaches the counter where at says and opens the
// crowd's socket; the test's end undoes it with the lab.
func newCrowd(t *testing.T, h, edgeHost *netns.Host, edge netip.AddrPort, n int, at countAt) *crowd {
	t.Helper()
	if n > maxCrowd {
		t.Fatalf("crowd of %d: at most %d", n, maxCrowd)
	}
	// The uplink: a veth pair born in the two namespaces (never in the
	// root one), so that the crowd's traffic skips the lab's bridge.
	ipRun(t, edgeHost, fmt.Sprintf("link add %s type veth peer name %s netns %s", crowdEdgeIf, crowdIf, h.Name))
	ipRun(t, edgeHost, "addr add "+crowdEdgeIP+"/30 dev "+crowdEdgeIf)
	ipRun(t, edgeHost, "link set "+crowdEdgeIf+" up")
	ipRun(t, edgeHost, fmt.Sprintf("route add %v via %s dev %s", crowdNet, crowdIP, crowdEdgeIf))
	ipRun(t, h, "addr add "+crowdIP+"/30 dev "+crowdIf)
	ipRun(t, h, "link set "+crowdIf+" up")
	ipRun(t, h, "route add local "+crowdNet.String()+" dev lo")
	ipRun(t, h, fmt.Sprintf("route add %v/32 via %s dev %s", edge.Addr(), crowdEdgeIP, crowdIf))
	c := &crowd{
		t: t, edge: edge, n: n, members: make([]member, n),
		inflight: map[int]struct{}{}, refused: map[wire.Reason]int{}, progress: make(chan struct{}, 1),
	}
	counterHost, ifname, attach := edgeHost, crowdEdgeIf, ebpf.AttachTCXEgress
	if at == atCrowd {
		counterHost, ifname, attach = h, crowdIf, ebpf.AttachTCXIngress
	}
	err := counterHost.Do(func() (err error) {
		c.count, err = newCrowdCounter(ifname, attach)
		return err
	})
	if err != nil {
		t.Fatalf("crowd counter on %s: %v", counterHost.Name, err)
	}
	t.Cleanup(c.count.close)
	err = h.Do(func() error {
		var err error
		c.conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv4Unspecified(), crowdPort)))
		if err != nil {
			return err
		}
		rc, err := c.conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		}); err != nil {
			return err
		}
		return serr
	})
	if err != nil {
		t.Fatalf("crowd on %s: %v", h.Name, err)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.read() }()
	t.Cleanup(func() {
		c.conn.Close()
		<-done
	})
	return c
}

// ipRun runs one ip command inside h.
func ipRun(t *testing.T, h *netns.Host, cmd string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", h.Name}, strings.Fields(cmd)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", h.Name, cmd, err, out)
	}
}

// sendFrom sends b to the edge from member i's address.
func (c *crowd) sendFrom(i int, b []byte) {
	oob := (&ipv4.ControlMessage{Src: crowdAddr(i).Addr().AsSlice()}).Marshal()
	// A lost request is retried; the error changes nothing.
	_, _, _ = c.conn.WriteMsgUDPAddrPort(b, oob, c.edge)
}

func nonceOf(i int, tag uint32) (n [wire.NonceLen]byte) {
	binary.BigEndian.PutUint32(n[:4], uint32(i))
	binary.BigEndian.PutUint32(n[4:], tag)
	return n
}

func (c *crowd) fromNonce(n [wire.NonceLen]byte) (int, uint32, bool) {
	i := int(binary.BigEndian.Uint32(n[:4]))
	return i, binary.BigEndian.Uint32(n[4:]), i < c.n
}

// hello starts (or restarts) member i's handshake. c.mu is held.
func (c *crowd) hello(i int, now time.Time, buf []byte) []byte {
	m := &c.members[i]
	if m.phase != phaseNone {
		c.restarts++
	}
	m.tag++
	m.phase, m.sent = phaseHello, now
	c.inflight[i] = struct{}{}
	k, err := (&wire.Hello{Nonce: nonceOf(i, m.tag), PadLen: wire.HelloMinLen - wire.HeaderLen - wire.NonceLen}).Encode(buf)
	if err != nil {
		panic(err)
	}
	return buf[:k]
}

// subscribe subscribes every member, crowdWindow handshakes at a time,
// and returns how many are subscribed when all are or the time is up.
func (c *crowd) subscribe(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	type out struct {
		i int
		b []byte
	}
	next := 0
	for int(c.subs.Load()) < c.n && time.Now().Before(deadline) {
		var sends []out
		now := time.Now()
		c.mu.Lock()
		for i := range c.inflight {
			if now.Sub(c.members[i].sent) > crowdRTO {
				sends = append(sends, out{i, c.hello(i, now, make([]byte, wire.HelloMinLen))})
			}
		}
		for len(c.inflight) < crowdWindow && next < c.n {
			sends = append(sends, out{next, c.hello(next, now, make([]byte, wire.HelloMinLen))})
			next++
		}
		c.mu.Unlock()
		for _, s := range sends {
			c.sendFrom(s.i, s.b)
		}
		select {
		case <-c.progress:
		case <-time.After(10 * time.Millisecond):
		}
	}
	return int(c.subs.Load())
}

// keepAlive sends every subscribed member's KEEPALIVE every interval
// (members spread evenly over it) until the returned stop is called or
// the test ends.
func (c *crowd) keepAlive(interval time.Duration) (stop func()) {
	const tick = 10 * time.Millisecond
	per := max(1, int(int64(c.n)*int64(tick)/int64(interval)))
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(tick)
		defer t.Stop()
		buf := make([]byte, wire.KeepaliveLen)
		next := 0
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			for range per {
				i := next
				next = (next + 1) % c.n
				c.mu.Lock()
				m := &c.members[i]
				ok := m.phase == phaseSubscribed
				m.seq++
				ka := wire.Keepalive{SessionID: m.session, Seq: m.seq}
				c.mu.Unlock()
				if !ok {
					continue
				}
				k, err := ka.Encode(buf)
				if err != nil {
					panic(err)
				}
				c.sendFrom(i, buf[:k])
				c.keepalives.Add(1)
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	c.t.Cleanup(stop)
	return stop
}

// read handles the edge's session replies until the socket closes.
func (c *crowd) read() {
	r, err := udp.NewReader(c.conn)
	if err != nil {
		c.t.Errorf("crowd reader: %v", err)
		return
	}
	// Session replies are small (a SUBSCRIBED naming 64 streams is 308
	// bytes); small buffers also spare the race detector, which marks
	// every buffer of a batch read whole.
	ms := make([]udp.Message, 64)
	for i := range ms {
		ms[i].Buf = make([]byte, 512)
	}
	out := make([]byte, wire.MaxDatagram)
	for {
		n, err := r.ReadBatch(ms)
		if err != nil {
			return
		}
		for _, m := range ms[:n] {
			if m.Truncated {
				c.unexpected.Add(1)
				continue
			}
			c.handle(m.Buf[:m.N], out)
		}
	}
}

func (c *crowd) handle(d, out []byte) {
	h, err := wire.Peek(d)
	if err != nil {
		c.unexpected.Add(1)
		return
	}
	switch h.Type {
	case wire.TypeCookie:
		var m wire.Cookie
		if m.Decode(d) != nil {
			break
		}
		i, tag, ok := c.fromNonce(m.Nonce)
		if !ok {
			break
		}
		c.mu.Lock()
		cur := &c.members[i]
		fresh := cur.phase == phaseHello && cur.tag == tag
		if fresh {
			cur.phase = phaseSubscribe
		}
		c.mu.Unlock()
		if !fresh {
			return // an answer to a retried HELLO
		}
		k, err := (&wire.Subscribe{Nonce: m.Nonce, Cookie: m.Cookie, Streams: []uint32{stream}}).Encode(out)
		if err != nil {
			panic(err)
		}
		c.sendFrom(i, out[:k])
		return
	case wire.TypeSubscribed:
		var m wire.Subscribed
		if m.Decode(d) != nil {
			break
		}
		i, tag, ok := c.fromNonce(m.Nonce)
		if !ok {
			break
		}
		c.mu.Lock()
		cur := &c.members[i]
		if cur.phase == phaseSubscribe && cur.tag == tag {
			cur.phase, cur.session = phaseSubscribed, m.SessionID
			delete(c.inflight, i)
			c.subs.Add(1)
		}
		c.mu.Unlock()
		select {
		case c.progress <- struct{}{}:
		default:
		}
		return
	case wire.TypeRefused:
		var m wire.Refused
		if m.Decode(d) != nil {
			break
		}
		if m.Reason == wire.ReasonUnknownSession {
			c.unknownSession.Add(1)
			return
		}
		i, tag, ok := c.fromNonce(m.Nonce)
		c.mu.Lock()
		c.refused[m.Reason]++
		if ok && c.members[i].tag == tag && c.members[i].phase != phaseSubscribed {
			// Retried after crowdRTO: a refusal is reported, not fought.
			c.members[i].sent = time.Now()
		}
		c.mu.Unlock()
		return
	case wire.TypeKeepalive:
		c.echoes.Add(1)
		return
	}
	c.unexpected.Add(1)
}

// report summarizes the session traffic.
func (c *crowd) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("restarts %d, refused %v, keepalives %d/%d echoed, unknown-session %d, unexpected %d",
		c.restarts, c.refused, c.echoes.Load(), c.keepalives.Load(), c.unknownSession.Load(), c.unexpected.Load())
}

// crowdCounter is a tcx program on the crowd's uplink: every ANNOUNCE or
// RELEASE is dropped; those to a member are counted, in total
// and per member as a bitmap of the periods (mod 64) it got, one per CPU.
type crowdCounter struct {
	totals, seen *ebpf.Map
	prog         *ebpf.Program
	link         link.Link
}

// totals slots.
const (
	crowdOther    = 0 // ANNOUNCE or RELEASE to anyone else (the group, flooded)
	crowdAnnounce = 1 // = wire.TypeAnnounce
	crowdRelease  = 2 // = wire.TypeRelease
)

// newCrowdCounter loads the counter and attaches it to ifname (ingress or
// egress); call it inside the interface's namespace.
func newCrowdCounter(ifname string, attach ebpf.AttachType) (*crowdCounter, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	c := &crowdCounter{}
	if c.totals, err = ebpf.NewMap(&ebpf.MapSpec{Name: "crowd_totals", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 3}); err != nil {
		return nil, err
	}
	if c.seen, err = ebpf.NewMap(&ebpf.MapSpec{Name: "crowd_seen", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 2 * maxCrowd}); err != nil {
		c.close()
		return nil, err
	}
	c.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "crowd_count", Type: ebpf.SchedCLS, License: "MIT",
		Instructions: crowdProgram(c.totals.FD(), c.seen.FD()),
	})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("load crowd counter: %w", err)
	}
	if c.link, err = link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: c.prog, Attach: attach}); err != nil {
		c.close()
		return nil, fmt.Errorf("attach crowd counter: %w", err)
	}
	return c, nil
}

func (c *crowdCounter) close() {
	if c.link != nil {
		c.link.Close()
	}
	if c.prog != nil {
		c.prog.Close()
	}
	for _, m := range []*ebpf.Map{c.totals, c.seen} {
		if m != nil {
			m.Close()
		}
	}
}

// total returns the datagrams counted in slot.
func (c *crowdCounter) total(slot uint32) uint64 {
	var v uint64
	if err := c.totals.Lookup(slot, &v); err != nil {
		return 0
	}
	return v
}

// periodsSeen returns the bitmap of periods (mod 64) for which member i
// got a datagram of type typ (crowdAnnounce or crowdRelease).
func (c *crowdCounter) periodsSeen(typ uint32, i int) uint64 {
	var vs []uint64
	if err := c.seen.Lookup(uint32(typ-1)<<17|uint32(i), &vs); err != nil {
		return 0
	}
	var v uint64
	for _, x := range vs {
		v |= x
	}
	return v
}

// Where things are in the frame tcx sees (Ethernet first, at ingress and
// egress alike) and
// in the stack copy the program makes of its first crowdLoad bytes. The
// copy starts at fp−66 so that the 4-byte magic lands 4-aligned (fp−24):
// the verifier refuses misaligned stack access.
const (
	crowdLoad   = 14 + 20 + 8 + 20 // Ethernet, IPv4 without options, UDP, header to the period's last byte
	stkFrame    = -66
	stkKey      = -72
	offEthType  = 12
	offIPVerIHL = 14
	offIPProto  = 23
	offIPDst    = 30
	offMagic    = 42
	offType     = 42 + 5
	offPeriodLo = 42 + 19
)

// crowdProgram is the counter, in cilium/ebpf's assembler.
func crowdProgram(totals, seen int) asm.Instructions {
	at := func(off int16) int16 { return stkFrame + off }
	magic := binary.LittleEndian.Uint32([]byte("EMBG")) // as a native load sees it on the stack
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stkFrame),
		asm.Mov.Imm(asm.R4, crowdLoad),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offEthType), asm.Half),
		asm.JNE.Imm(asm.R1, 0x0008, "pass"), // 08 00, read little-endian
		asm.LoadMem(asm.R1, asm.RFP, at(offIPVerIHL), asm.Byte),
		asm.JNE.Imm(asm.R1, 0x45, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPProto), asm.Byte),
		asm.JNE.Imm(asm.R1, unix.IPPROTO_UDP, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offMagic), asm.Word),
		asm.JNE.Imm(asm.R1, int32(magic), "pass"),
		asm.LoadMem(asm.R7, asm.RFP, at(offType), asm.Byte),
		asm.JEq.Imm(asm.R7, int32(wire.TypeAnnounce), "data"),
		asm.JNE.Imm(asm.R7, int32(wire.TypeRelease), "pass"),

		// data: R8 is the totals slot, other until the destination is a member.
		asm.Mov.Imm(asm.R8, crowdOther).WithSymbol("data"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPDst), asm.Byte),
		asm.JNE.Imm(asm.R1, int32(crowdNet.Addr().As4()[0]), "count"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPDst+1), asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, 0xfe),
		asm.JNE.Imm(asm.R2, int32(crowdNet.Addr().As4()[1]), "count"),
		// key = (type−1)<<17 | member, member = the address's low 17 bits
		asm.And.Imm(asm.R1, 1),
		asm.LSh.Imm(asm.R1, 16),
		asm.LoadMem(asm.R2, asm.RFP, at(offIPDst+2), asm.Byte),
		asm.LSh.Imm(asm.R2, 8),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, at(offIPDst+3), asm.Byte),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Sub.Imm(asm.R2, 1),
		asm.LSh.Imm(asm.R2, 17),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.RFP, stkKey, asm.R1, asm.Word),
		asm.Mov.Reg(asm.R8, asm.R7),
		asm.LoadMapPtr(asm.R1, seen),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "count"),
		// bit = 1 << (period & 63)
		asm.LoadMem(asm.R2, asm.RFP, at(offPeriodLo), asm.Byte),
		asm.And.Imm(asm.R2, 63),
		asm.Mov.Imm(asm.R1, 1),
		asm.LSh.Reg(asm.R1, asm.R2),
		// A per-CPU value: a softirq on this CPU cannot interleave, so a
		// plain read-modify-write is safe. (An atomic OR would do in a
		// shared map, but cilium/ebpf v0.22.0 marshals every atomic
		// operation's immediate as 0, BPF_ADD: Instruction.Marshal reads
		// the constant before it folds the operation into it.)
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.Or.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord),

		asm.StoreMem(asm.RFP, stkKey, asm.R8, asm.Word).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, totals),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.Mov.Imm(asm.R1, 1),
		asm.AddAtomic.Mem(asm.R0, asm.R1, asm.DWord, 0),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("drop"), // TC_ACT_SHOT
		asm.Return(),

		asm.Mov.Imm(asm.R0, 0).WithSymbol("pass"), // TC_ACT_OK
		asm.Return(),
	}
}

// usage is the process's CPU time and peak resident set.
type usage struct {
	cpu    time.Duration
	maxRSS int64 // bytes
}

func getUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{
		cpu:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxRSS: ru.Maxrss << 10,
	}
}

// udpStats returns h's UDP counters (/proc/net/snmp), such as
// "RcvbufErrors": datagrams a socket's full buffer dropped.
func udpStats(h *netns.Host) map[string]int64 {
	out := map[string]int64{}
	_ = h.Do(func() error {
		// /proc/net follows the main thread's namespace; thread-self
		// follows this one, which Do switched.
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f[1:]
				continue
			}
			for i, v := range f[1:] {
				if i < len(names) {
					out[names[i]], _ = strconv.ParseInt(v, 10, 64)
				}
			}
		}
		return nil
	})
	return out
}

// TestCrowdCounter runs the counter program on made-up frames: members'
// ANNOUNCE and RELEASE datagrams are counted and set their period's bit,
// repeats included; the group's are dropped uncounted per member; session
// replies and other traffic pass.
func TestCrowdCounter(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	totals, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 3})
	if err != nil {
		t.Skipf("BPF maps: %v", err)
	}
	defer totals.Close()
	seen, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 2 * maxCrowd})
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT", Instructions: crowdProgram(totals.FD(), seen.FD())})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	c := &crowdCounter{totals: totals, seen: seen}

	frame := func(dst netip.Addr, d []byte) []byte {
		f := make([]byte, 42+len(d))
		f[12], f[13] = 0x08, 0x00
		f[14], f[23] = 0x45, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(f[16:], uint16(28+len(d)))
		copy(f[26:30], []byte{10, 0, 0, 1})
		a := dst.As4()
		copy(f[30:34], a[:])
		binary.BigEndian.PutUint16(f[38:], uint16(8+len(d)))
		return append(f[:42], d...)
	}
	release := func(p uint64) []byte {
		d := make([]byte, wire.ReleaseLen)
		if _, err := (&wire.Release{Header: wire.Header{Stream: stream, Period: p}, ReleaseAt: 1, SentAt: 1}).Encode(d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	announce := func(p uint64) []byte { // enough of one for the counter
		d := release(p)
		d[5] = byte(wire.TypeAnnounce)
		return d
	}
	cookie := make([]byte, wire.CookieMsgLen)
	if _, err := (&wire.Cookie{}).Encode(cookie); err != nil {
		t.Fatal(err)
	}
	member := crowdAddr(70_000).Addr() // in the block's upper half
	for _, tc := range []struct {
		name string
		f    []byte
		want uint32
	}{
		{"release 0", frame(member, release(0)), 2},
		{"release 0 again", frame(member, release(0)), 2},
		{"release 65", frame(member, release(65)), 2},
		{"announce 3", frame(member, announce(3)), 2},
		{"group", frame(groupAddr.Addr(), release(4)), 2},
		{"cookie", frame(member, cookie), 0},
		{"not embargo", frame(member, make([]byte, 80)), 0},
	} {
		if got, err := prog.Run(&ebpf.RunOptions{Data: tc.f}); err != nil || got != tc.want {
			t.Errorf("%s: verdict %d (%v), want %d", tc.name, got, err, tc.want)
		}
	}
	if got := c.periodsSeen(crowdRelease, 70_000); got != 1<<0|1<<1 {
		t.Errorf("release periods %#x, want periods 0 and 65 (bit 1)", got)
	}
	if got := c.periodsSeen(crowdAnnounce, 70_000); got != 1<<3 {
		t.Errorf("announce periods %#x, want period 3", got)
	}
	if r, a, o := c.total(crowdRelease), c.total(crowdAnnounce), c.total(crowdOther); r != 3 || a != 1 || o != 1 {
		t.Errorf("totals: release %d announce %d other %d, want 3 1 1", r, a, o)
	}
}
