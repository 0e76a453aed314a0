package bpf

import (
	"encoding/binary"
	"errors"
	"maps"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// requireBPF skips t when this process cannot load the filter, with the
// reason, so an ordinary user sees why and CI (root) runs everything. As
// root on a kernel that loads socket filters, a refusal is the program's
// own fault (the verifier rejected it), so t fails instead: a broken
// program must never pass as a skip.
func requireBPF(t testing.TB) {
	t.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Geteuid() == 0 && !errors.Is(err, ErrNotSupported) && features.HaveProgramType(ebpf.SocketFilter) == nil {
		t.Fatalf("this kernel loads socket filters for root, but not ours: %v", err)
	}
	t.Skipf("BPF socket filter not available here (needs root or CAP_BPF): %v", err)
}

// newTestFilter loads a filter for t and closes it when t ends.
func newTestFilter(t testing.TB, opts ...Option) *Filter {
	t.Helper()
	requireBPF(t)
	f, err := NewFilter(opts...)
	if err != nil {
		t.Fatalf("NewFilter: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// testPacket wraps a datagram the way BPF_PROG_TEST_RUN must see it to
// match a real UDP socket: a 14-byte Ethernet header, which the kernel
// pulls, then the UDP header where the filter's skb->data will point. The
// EtherType is the IEEE local experimental one because after an IP
// EtherType the kernel insists on a whole IPv4 or IPv6 header (34 or 54
// bytes at least), which would turn away the short datagrams the filter
// must see; the filter does not read it.
func testPacket(dg []byte) []byte {
	p := make([]byte, 14+udpHeaderLen+len(dg))
	binary.BigEndian.PutUint16(p[12:], unix.ETH_P_802_EX1)
	binary.BigEndian.PutUint16(p[14:], 40000)                        // source port
	binary.BigEndian.PutUint16(p[16:], 7171)                         // destination port
	binary.BigEndian.PutUint16(p[18:], uint16(udpHeaderLen+len(dg))) // length
	copy(p[14+udpHeaderLen:], dg)
	return p
}

// header builds a raw datagram: a header with these fields and n payload
// bytes, with the length field right unless the caller edits it.
func header(typ wire.Type, flags uint16, stream uint32, period uint64, n int) []byte {
	b := make([]byte, wire.HeaderLen+n)
	binary.BigEndian.PutUint32(b[0:], wire.Magic)
	b[offVersion] = wire.Version
	b[offType] = byte(typ)
	binary.BigEndian.PutUint16(b[offFlags:], flags)
	binary.BigEndian.PutUint32(b[offStream:], stream)
	binary.BigEndian.PutUint64(b[offPeriod:], period)
	binary.BigEndian.PutUint16(b[offLength:], uint16(n))
	return b
}

// release encodes a RELEASE with wire, so the tests use the codec's layout
// rather than this package's offsets.
func release(t testing.TB, stream uint32, period uint64, flags uint16, releaseAt int64) []byte {
	t.Helper()
	r := wire.Release{
		Header:    wire.Header{Flags: flags, Stream: stream, Period: period},
		ReleaseAt: releaseAt,
		SentAt:    releaseAt,
		EdgeID:    7,
	}
	for i := range r.RK {
		r.RK[i] = byte(i)
	}
	b := make([]byte, wire.ReleaseLen)
	if _, err := r.Encode(b); err != nil {
		t.Fatalf("encode release: %v", err)
	}
	return b
}

// taiNow reads CLOCK_TAI, the clock bpf_ktime_get_tai_ns reads. Its offset
// from CLOCK_REALTIME is whatever the kernel was told (0 until something
// sets it), never an assumed 37 s.
func taiNow(t testing.TB) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_TAI, &ts); err != nil {
		t.Fatalf("clock_gettime(CLOCK_TAI): %v", err)
	}
	return ts.Nano()
}

// taiOffset is CLOCK_TAI − CLOCK_REALTIME, to turn SO_TIMESTAMPNS stamps
// (CLOCK_REALTIME) into the kernel filter's TAI.
func taiOffset(t testing.TB) time.Duration {
	off, err := ptp.KernelTAIOffset()
	if err != nil {
		t.Fatalf("kernel TAI offset: %v", err)
	}
	return time.Duration(off)
}

// delta returns after − before for every verdict.
func delta(before, after map[string]uint64) map[string]uint64 {
	d := maps.Clone(after)
	for k, v := range before {
		d[k] -= v
	}
	for k, v := range d {
		if v == 0 {
			delete(d, k)
		}
	}
	return d
}

func verdicts(t testing.TB, f *Filter) map[string]uint64 {
	t.Helper()
	v, err := f.Verdicts()
	if err != nil {
		t.Fatalf("Verdicts: %v", err)
	}
	return v
}

func histogram(t testing.TB, f *Filter) skew.Histogram {
	t.Helper()
	h, err := f.Unconfirmed()
	if err != nil {
		t.Fatalf("Unconfirmed: %v", err)
	}
	return h
}

// listenUDP opens a loopback UDP socket and a sender connected to it.
// network is "udp4" (127.0.0.1), "udp6" (::1) or "dual" (a dual-stack
// socket on [::] reached through 127.0.0.1, so IPv4-mapped). The receive
// buffer is large enough that no test burst is dropped for space
// (SO_RCVBUFFORCE: these tests run as root).
func listenUDP(t testing.TB, network string) (recv, send *net.UDPConn) {
	t.Helper()
	listen, ip, dst := network, net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1)
	switch network {
	case "udp6":
		ip, dst = net.IPv6loopback, net.IPv6loopback
	case "dual":
		listen, ip = "udp", net.IPv6unspecified
	}
	recv, err := net.ListenUDP(listen, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Skipf("no %s socket: %v", network, err)
	}
	t.Cleanup(func() { recv.Close() })
	setInt(t, recv, unix.SO_RCVBUFFORCE, 8<<20)
	send, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: dst, Port: recv.LocalAddr().(*net.UDPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Close() })
	return recv, send
}

func setInt(t testing.TB, c *net.UDPConn, opt, v int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, v) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("setsockopt %d: %v", opt, serr)
	}
}

// readAll reads datagrams until want have arrived or the socket has been
// quiet for quiet, and returns copies of them with their SO_TIMESTAMPNS
// stamps (CLOCK_REALTIME ns; 0 when stamps are off).
func readAll(t testing.TB, c *net.UDPConn, want int, quiet time.Duration) (dgs [][]byte, stamps []int64) {
	t.Helper()
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for len(dgs) < want {
		if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
			t.Fatal(err)
		}
		n, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				break
			}
			t.Fatalf("read: %v", err)
		}
		dgs = append(dgs, append([]byte(nil), buf[:n]...))
		stamps = append(stamps, parseStamp(t, oob[:oobn]))
	}
	return dgs, stamps
}

// parseStamp returns the SCM_TIMESTAMPNS time in oob, or 0.
func parseStamp(t testing.TB, oob []byte) int64 {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		t.Fatalf("parse control messages: %v", err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return sec*1e9 + nsec
		}
	}
	return 0
}

// drained reports whether c has no datagram queued, without waiting.
func drained(t testing.TB, c *net.UDPConn) bool {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rerr error
	buf := make([]byte, 1)
	if err := rc.Control(func(fd uintptr) {
		_, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_PEEK)
	}); err != nil {
		t.Fatal(err)
	}
	return rerr == unix.EAGAIN
}

// enableStamps turns on SO_TIMESTAMPNS on recv and waits until the kernel
// really stamps on arrival. The first socket in the system to ask flips a
// static key from a workqueue, and until then datagrams are stamped when
// recvmsg reads them instead; a probe (sent through send and counted by
// any attached filter as a pass) shows when that is over.
func enableStamps(t testing.TB, recv, send *net.UDPConn) {
	t.Helper()
	setInt(t, recv, unix.SO_TIMESTAMPNS, 1)
	probe := make([]byte, wire.HeaderLen)
	copy(probe, header(wire.TypeKeepalive, 0, 0, 0, 0))
	for range 200 {
		if _, err := send.Write(probe); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		_, stamps := readAll(t, recv, 1, time.Second)
		if len(stamps) == 1 && stamps[0] != 0 && time.Since(time.Unix(0, stamps[0])) >= time.Millisecond {
			return
		}
	}
	t.Fatal("SO_TIMESTAMPNS never stamped on arrival")
}
