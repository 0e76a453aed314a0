package bpf

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/embargo-live/embargo/wire"
)

// BenchmarkFilter runs the filter through BPF_PROG_TEST_RUN. ns/op is one
// syscall running it once (mostly syscall and skb setup); kernel-ns/pkt is
// the kernel's own per-run time over many repeats, the cost a receiver
// actually pays per datagram. A repeated RELEASE is what every copy after
// the first costs; BenchmarkFilterFirstRelease measures the first.
func BenchmarkFilter(b *testing.B) {
	f := newTestFilter(b)
	garbage := make([]byte, 120)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	for _, bm := range []struct {
		name string
		dg   []byte
	}{
		{"release-repeat", release(b, 1, 1, 0, taiNow(b))},
		{"announce", header(wire.TypeAnnounce, 0, 1, 1, 1100)},
		{"garbage", garbage},
	} {
		b.Run(bm.name, func(b *testing.B) {
			pkt := testPacket(bm.dg)
			opts := ebpf.RunOptions{Data: pkt, Repeat: 1}
			b.ReportAllocs()
			for b.Loop() {
				if ret, err := f.prog.Run(&opts); err != nil || (ret == 0) != (bm.name == "garbage") {
					b.Fatalf("run: %d, %v", ret, err)
				}
			}
			_, per, err := f.prog.Benchmark(pkt, 200_000, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "kernel-ns/pkt")
		})
	}
}

// BenchmarkFilterFirstRelease runs the filter on the first copy of a new
// period each time, the path that also inserts into the first-arrival map
// and the histogram. The kernel times each single run.
func BenchmarkFilterFirstRelease(b *testing.B) {
	f := newTestFilter(b)
	pkt := testPacket(release(b, 1, 0, 0, taiNow(b)))
	var kernel time.Duration
	var n int
	b.ReportAllocs()
	for b.Loop() {
		n++
		binary.BigEndian.PutUint64(pkt[14+udpHeaderLen+offPeriod:], uint64(n))
		ret, per, err := f.prog.Benchmark(pkt, 1, nil)
		if err != nil || ret == 0 {
			b.Fatalf("run: %d, %v", ret, err)
		}
		kernel += per
	}
	b.ReportMetric(float64(kernel.Nanoseconds())/float64(n), "kernel-ns/pkt")
}

// BenchmarkReceive measures datagrams per second read from a loopback
// socket fed by a sender goroutine, on a plain socket and on one with the
// filter attached, alternating bursts in the same run so both see the same
// machine. One op is a burst of receiveBurst RELEASEs to each socket.
func BenchmarkReceive(b *testing.B) {
	f := newTestFilter(b)
	plain, plainSend := listenUDP(b, "udp4")
	filtered, filteredSend := socketPair(b, f, "udp4")
	dg := release(b, 1, 1, 0, taiNow(b))

	type burst struct {
		conn *net.UDPConn
		done chan error
	}
	work := make(chan burst)
	defer close(work)
	go func() {
		for w := range work {
			var err error
			for range receiveBurst {
				if _, err = w.conn.Write(dg); err != nil {
					break
				}
			}
			w.done <- err
		}
	}()

	buf := make([]byte, 2048)
	run := func(recv, send *net.UDPConn) (time.Duration, int) {
		done := make(chan error, 1)
		start := time.Now()
		work <- burst{send, done}
		got := 0
		recv.SetReadDeadline(start.Add(2 * time.Second))
		for got < receiveBurst {
			if _, err := recv.Read(buf); err != nil {
				break // a timeout: the rest were lost
			}
			got++
		}
		elapsed := time.Since(start)
		if err := <-done; err != nil {
			b.Fatalf("send: %v", err)
		}
		return elapsed, got
	}

	var plainT, filterT time.Duration
	var plainN, filterN, sent int
	b.ReportAllocs()
	for b.Loop() {
		d, n := run(plain, plainSend)
		plainT, plainN = plainT+d, plainN+n
		d, n = run(filtered, filteredSend)
		filterT, filterN = filterT+d, filterN+n
		sent += receiveBurst
	}
	b.ReportMetric(float64(plainN)/plainT.Seconds(), "plain-dgram/s")
	b.ReportMetric(float64(filterN)/filterT.Seconds(), "filter-dgram/s")
	b.ReportMetric(float64(2*sent-plainN-filterN), "lost")
}

// receiveBurst is well under what the 8 MiB receive buffer holds, so a
// burst is never dropped for space while the reader catches up.
const receiveBurst = 1000
