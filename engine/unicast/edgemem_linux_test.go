package unicast

import (
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// rss is the process's resident set, in bytes, after returning freed
// memory to the system.
func rss(b *testing.B) uint64 {
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * uint64(os.Getpagesize())
}

// BenchmarkEdgeMemory counts an edge's memory per unicast subscriber of
// one stream whole: the session table (slots, address index, per-address
// and per-prefix counts, interned stream sets), both fan-out plans
// (RELEASE and ANNOUNCE), after the sweep that prunes the subscribe-rate
// table, on an IPv4 and an IPv6 server, by heap and by RSS, at 100,000
// subscribers subscribed through the real handshake.
func BenchmarkEdgeMemory(b *testing.B) {
	const n = 100_000
	for _, fam := range []struct {
		name   string
		listen string
		addr   func(i int) netip.AddrPort
	}{
		{"ipv4", "127.0.0.1:0", addr},
		{"ipv6", "[::1]:0", func(i int) netip.AddrPort {
			a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 16), byte(i >> 8), 0, 0, 0, 0, 0, 0, 0, byte(i)}
			return netip.AddrPortFrom(netip.AddrFrom16(a), 40000)
		}},
	} {
		b.Run(fam.name, func(b *testing.B) {
			for b.Loop() {
				heap0, rss0 := heapInUse(), rss(b)
				srv, err := NewServer(ServerConfig{Listen: netip.MustParseAddrPort(fam.listen), Senders: 1, Clock: ptp.NewSim(),
					Sessions: SessionConfig{Streams: []uint32{1}, MaxSubscribers: n, MaxPerAddress: n, MaxPerPrefix: n, SubscribeBurst: n}})
				if err != nil {
					b.Fatal(err)
				}
				s := srv.sessions
				out, buf := make([]byte, wire.MaxDatagram), make([]byte, wire.MaxDatagram)
				h := hello(b)
				sub := &wire.Subscribe{KeyShare: testShare, Streams: []uint32{1}}
				var c wire.Cookie
				for i := range n {
					from := fam.addr(i)
					if err := c.Decode(s.Handle(h, from, t0, out).Reply); err != nil {
						b.Fatal(err)
					}
					sub.Cookie = c.Cookie
					k, _ := sub.Encode(buf)
					if a := s.Handle(buf[:k], from, t0, out); !a.Subscribed {
						b.Fatalf("subscriber %d refused: %x", i, a.Reply)
					}
				}
				s.Expire(t0.Add(time.Second)) // the sweep: prunes the rate table
				for _, p := range []*planner{srv.release, srv.announce} {
					p.mu.Lock()
					if pl := p.plan(1); pl.n != n {
						b.Fatalf("plan of %d, want %d", pl.n, n)
					}
					p.mu.Unlock()
				}
				heap1, rss1 := heapInUse(), rss(b)
				b.ReportMetric(float64(heap1-heap0)/n, "heap-B/subscriber")
				b.ReportMetric(float64(int64(rss1)-int64(rss0))/n, "rss-B/subscriber")
				if s.Stats().Subscribers != n {
					b.Fatal("lost subscribers")
				}
				srv.Close()
				fmt.Fprint(os.Stderr) // keep srv reachable until measured
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
