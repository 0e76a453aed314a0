//go:build linux

package faults

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/seal"
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
	crowdBits = 32 - 15 // crowdNet's host bits: a member's number
	maxCrowd  = 1 << crowdBits
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
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(i))
	return netip.AddrPortFrom(netip.AddrFrom4(b), crowdPort)
}

// crowd is len(members) subscribers to one edge.
type crowd struct {
	t     *testing.T
	edge  netip.AddrPort
	conn  *net.UDPConn
	count *crowdCounter

	mu       sync.Mutex
	members  []member
	share    *ecdh.PrivateKey // every member's key share: one X25519 for all keeps a large crowd cheap
	inflight map[int]struct{} // members with a handshake under way: they leave it subscribed
	refused  map[wire.Reason]int
	restarts int           // handshakes started over (timeout or refusal)
	progress chan struct{} // a handshake finished

	keepalives, echoes, unknownSession, unexpected atomic.Int64
}

type member struct {
	phase   uint8  // phaseNone … phaseSubscribed
	tag     uint32 // names the current attempt in its nonces
	sent    time.Time
	session [wire.SessionIDLen]byte
	key     [wire.SessionKeyLen]byte
	seq     uint32
}

// A member's handshake phases, in order: an answer moves it to the next.
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
	ipBatch(t, edgeHost,
		fmt.Sprintf("link add %s type veth peer name %s netns %s", crowdEdgeIf, crowdIf, h.Name),
		fmt.Sprintf("addr add %s/30 dev %s", crowdEdgeIP, crowdEdgeIf),
		fmt.Sprintf("link set %s up", crowdEdgeIf),
		fmt.Sprintf("route add %v via %s dev %s", crowdNet, crowdIP, crowdEdgeIf))
	ipBatch(t, h,
		fmt.Sprintf("addr add %s/30 dev %s", crowdIP, crowdIf),
		fmt.Sprintf("link set %s up", crowdIf),
		fmt.Sprintf("route add local %v dev lo", crowdNet),
		fmt.Sprintf("route add %v/32 via %s dev %s", edge.Addr(), crowdEdgeIP, crowdIf))
	share, err := seal.NewKeyShare(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &crowd{
		t: t, edge: edge, members: make([]member, n), share: share,
		inflight: map[int]struct{}{}, refused: map[wire.Reason]int{}, progress: make(chan struct{}, 1),
	}
	counterHost, ifname, attach := edgeHost, crowdEdgeIf, ebpf.AttachTCXEgress
	if at == atCrowd {
		counterHost, ifname, attach = h, crowdIf, ebpf.AttachTCXIngress
	}
	if c.count, err = loadCrowdCounter(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.count.close)
	if err := counterHost.Do(func() error { return c.count.attach(ifname, attach) }); err != nil {
		t.Fatalf("crowd counter on %s: %v", counterHost.Name, err)
	}
	err = h.Do(func() (err error) {
		c.conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: crowdPort})
		return err
	})
	if err != nil {
		t.Fatalf("crowd on %s: %v", h.Name, err)
	}
	// Room for keepalive echoes while a fan-out pass holds the CPUs.
	rcvBuf(t, c.conn, 8<<20)
	done := make(chan struct{})
	go func() { defer close(done); c.read() }()
	t.Cleanup(func() {
		c.conn.Close()
		<-done
	})
	return c
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
	return i, binary.BigEndian.Uint32(n[4:]), i < len(c.members)
}

// hello starts (or restarts) member i's handshake and returns the nonce
// its HELLO carries. c.mu is held.
func (c *crowd) hello(i int, now time.Time) [wire.NonceLen]byte {
	m := &c.members[i]
	if m.phase != phaseNone {
		c.restarts++
	}
	m.tag++
	m.phase, m.sent = phaseHello, now
	c.inflight[i] = struct{}{}
	return nonceOf(i, m.tag)
}

// subscribe subscribes every member, crowdWindow handshakes at a time,
// and returns how many are subscribed when all are or the time is up.
func (c *crowd) subscribe(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, wire.HelloMinLen)
	hello := wire.Hello{PadLen: wire.HelloMinLen - wire.HeaderLen - wire.NonceLen}
	var nonces [][wire.NonceLen]byte
	next := 0 // members before next have started
	for {
		now := time.Now()
		c.mu.Lock()
		subscribed := next - len(c.inflight)
		if subscribed == len(c.members) || now.After(deadline) {
			c.mu.Unlock()
			return subscribed
		}
		nonces = nonces[:0]
		for i := range c.inflight {
			if now.Sub(c.members[i].sent) > crowdRTO {
				nonces = append(nonces, c.hello(i, now))
			}
		}
		for ; len(c.inflight) < crowdWindow && next < len(c.members); next++ {
			nonces = append(nonces, c.hello(next, now))
		}
		c.mu.Unlock()
		for _, nonce := range nonces {
			hello.Nonce = nonce
			k, err := hello.Encode(buf)
			if err != nil {
				panic(err)
			}
			i, _, _ := c.fromNonce(nonce)
			c.sendFrom(i, buf[:k])
		}
		select {
		case <-c.progress:
		case <-tick.C:
		}
	}
}

// keepAlive sends every subscribed member's KEEPALIVE every interval
// (members spread evenly over it) until the returned stop is called or
// the test ends.
func (c *crowd) keepAlive(interval time.Duration) (stop func()) {
	const tick = 10 * time.Millisecond
	per := max(1, int(int64(len(c.members))*int64(tick)/int64(interval)))
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
				next = (next + 1) % len(c.members)
				c.mu.Lock()
				m := &c.members[i]
				ok := m.phase == phaseSubscribed
				if ok {
					m.seq++
				}
				ka, key := wire.Keepalive{SessionID: m.session, Seq: m.seq}, m.key
				c.mu.Unlock()
				if !ok {
					continue
				}
				k, err := ka.Encode(buf)
				if err != nil {
					panic(err)
				}
				seal.SignSession(&key, buf[:k])
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
	ms := make([]datagram.Message, 64)
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

// answered returns the member whose current attempt nonce names, if that
// attempt is in phase want, and moves it to the next phase. An answer to
// an earlier attempt is ignored, one naming no member counted unexpected.
// c.mu is held.
func (c *crowd) answered(nonce [wire.NonceLen]byte, want uint8) (int, bool) {
	i, tag, ok := c.fromNonce(nonce)
	if !ok {
		c.unexpected.Add(1)
		return 0, false
	}
	m := &c.members[i]
	if m.phase != want || m.tag != tag {
		return 0, false
	}
	m.phase++
	return i, true
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
		c.mu.Lock()
		i, ok := c.answered(m.Nonce, phaseHello)
		c.mu.Unlock()
		if ok {
			sub := wire.Subscribe{Nonce: m.Nonce, Cookie: m.Cookie, KeyShare: [wire.KeyShareLen]byte(c.share.PublicKey().Bytes()), Streams: []uint32{stream}}
			k, err := sub.Encode(out)
			if err != nil {
				panic(err)
			}
			c.sendFrom(i, out[:k])
		}
		return
	case wire.TypeSubscribed:
		var m wire.Subscribed
		if m.Decode(d) != nil {
			break
		}
		mask, err := seal.SessionKeyMask(c.share, &m.KeyShare, &m.Nonce)
		if err != nil {
			break
		}
		c.mu.Lock()
		if i, ok := c.answered(m.Nonce, phaseSubscribe); ok {
			c.members[i].session = m.SessionID
			c.members[i].key = seal.XorKey(&m.SealedKey, &mask)
			delete(c.inflight, i)
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
	crowdOther    = 0                         // ANNOUNCE or RELEASE to anyone else (the group, flooded)
	crowdAnnounce = uint32(wire.TypeAnnounce) // to a member
	crowdRelease  = uint32(wire.TypeRelease)  // to a member
)

// The program's verdicts.
const (
	tcActOK   = 0
	tcActShot = 2
)

// loadCrowdCounter loads the counter's maps and program, unattached.
func loadCrowdCounter() (*crowdCounter, error) {
	c := &crowdCounter{}
	var err error
	if c.totals, err = ebpf.NewMap(&ebpf.MapSpec{Name: "crowd_totals", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 3}); err != nil {
		return nil, fmt.Errorf("crowd counter: %w", err)
	}
	if c.seen, err = ebpf.NewMap(&ebpf.MapSpec{Name: "crowd_seen", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 2 * maxCrowd}); err != nil {
		c.close()
		return nil, fmt.Errorf("crowd counter: %w", err)
	}
	c.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "crowd_count", Type: ebpf.SchedCLS, License: "MIT",
		Instructions: crowdProgram(c.totals.FD(), c.seen.FD()),
	})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("load crowd counter: %w", err)
	}
	return c, nil
}

// attach attaches the counter to ifname (tcx ingress or egress); call it
// inside the interface's namespace.
func (c *crowdCounter) attach(ifname string, at ebpf.AttachType) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	if c.link, err = link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: c.prog, Attach: at}); err != nil {
		return fmt.Errorf("attach crowd counter: %w", err)
	}
	return nil
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
	if err := c.seen.Lookup((typ-1)<<crowdBits|uint32(i), &vs); err != nil {
		return 0
	}
	var v uint64
	for _, x := range vs {
		v |= x
	}
	return v
}

// Where things are in the frame tcx sees (Ethernet first, at ingress and
// egress alike) and in the stack copy the program makes of its first
// crowdLoad bytes. The copy starts at fp−66 so that the 4-byte magic lands
// 4-aligned (fp−24): the verifier refuses misaligned stack access.
const (
	offIPDst    = 14 + 16          // after Ethernet
	offData     = 14 + 20 + 8      // Ethernet, IPv4 without options, UDP
	crowdLoad   = offData + 12 + 8 // to the period's last byte
	stkFrame    = -66
	stkKey      = -72
	offEthType  = 12
	offIPVerIHL = 14
	offIPProto  = 14 + 9
	offMagic    = offData
	offType     = offData + 5
	offPeriodLo = crowdLoad - 1
)

// crowdProgram is the counter, in cilium/ebpf's assembler.
func crowdProgram(totals, seen int) asm.Instructions {
	at := func(off int16) int16 { return stkFrame + off }
	block := crowdNet.Addr().As4()
	return asm.Instructions{
		// R1 is the context, as skb_load_bytes wants it.
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stkFrame),
		asm.Mov.Imm(asm.R4, crowdLoad),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offEthType), asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.JNE.Imm(asm.R1, unix.ETH_P_IP, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPVerIHL), asm.Byte),
		asm.JNE.Imm(asm.R1, 0x45, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPProto), asm.Byte),
		asm.JNE.Imm(asm.R1, unix.IPPROTO_UDP, "pass"),
		asm.LoadMem(asm.R1, asm.RFP, at(offMagic), asm.Word),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.JNE.Imm(asm.R1, int32(wire.Magic), "pass"),
		asm.LoadMem(asm.R7, asm.RFP, at(offType), asm.Byte),
		asm.JEq.Imm(asm.R7, int32(wire.TypeAnnounce), "data"),
		asm.JNE.Imm(asm.R7, int32(wire.TypeRelease), "pass"),

		// data: R8 is the totals slot, other until the destination is a member.
		asm.Mov.Imm(asm.R8, crowdOther).WithSymbol("data"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPDst), asm.Byte),
		asm.JNE.Imm(asm.R1, int32(block[0]), "count"),
		asm.LoadMem(asm.R1, asm.RFP, at(offIPDst+1), asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, 0xfe),
		asm.JNE.Imm(asm.R2, int32(block[1]), "count"),
		// key = (type−1)<<crowdBits | member, member = the address's low
		// crowdBits (17) bits
		asm.And.Imm(asm.R1, 1),
		asm.LSh.Imm(asm.R1, 16),
		asm.LoadMem(asm.R2, asm.RFP, at(offIPDst+2), asm.Byte),
		asm.LSh.Imm(asm.R2, 8),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, at(offIPDst+3), asm.Byte),
		asm.Or.Reg(asm.R1, asm.R2),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Sub.Imm(asm.R2, 1),
		asm.LSh.Imm(asm.R2, crowdBits),
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
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, tcActShot).WithSymbol("drop"),
		asm.Return(),

		asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("pass"),
		asm.Return(),
	}
}

// TestCrowdCounter runs the counter program on made-up frames: members'
// ANNOUNCE and RELEASE datagrams are counted and set their period's bit,
// repeats included; the group's are dropped uncounted per member; session
// replies and other traffic pass.
func TestCrowdCounter(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	c, err := loadCrowdCounter()
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EPERM) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()

	frame := func(dst netip.Addr, d []byte) []byte {
		f := make([]byte, offData, offData+len(d))
		binary.BigEndian.PutUint16(f[offEthType:], unix.ETH_P_IP)
		f[offIPVerIHL], f[offIPProto] = 0x45, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(f[16:], uint16(28+len(d)))
		copy(f[26:30], []byte{10, 0, 0, 1})
		a := dst.As4()
		copy(f[offIPDst:], a[:])
		binary.BigEndian.PutUint16(f[38:], uint16(8+len(d)))
		return append(f, d...)
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
		{"release 0", frame(member, release(0)), tcActShot},
		{"release 0 again", frame(member, release(0)), tcActShot},
		{"release 65", frame(member, release(65)), tcActShot},
		{"announce 3", frame(member, announce(3)), tcActShot},
		{"group", frame(groupAddr.Addr(), release(4)), tcActShot},
		{"cookie", frame(member, cookie), tcActOK},
		{"not embargo", frame(member, make([]byte, 80)), tcActOK},
	} {
		if got, err := c.prog.Run(&ebpf.RunOptions{Data: tc.f}); err != nil || got != tc.want {
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
