package bpf

import (
	"bytes"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/wire"
)

// The networks every real-socket test runs on: IPv4, IPv6, and IPv4 sent to
// a dual-stack IPv6 socket (IPv4-mapped), the three receive paths a
// receiver can use.
var networks = []string{"udp4", "udp6", "dual"}

// socketPair opens a receiving socket for network with the filter attached
// and a sender connected to it.
func socketPair(t testing.TB, f *Filter, network string) (recv, send *net.UDPConn) {
	t.Helper()
	recv, send = listenUDP(t, network)
	if err := f.Attach(recv); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return recv, send
}

func write(t testing.TB, c *net.UDPConn, dg []byte) {
	t.Helper()
	if _, err := c.Write(dg); err != nil {
		t.Fatalf("send %d bytes: %v", len(dg), err)
	}
}

// waitCounted waits until the filter has counted n more datagrams than in
// before (all verdicts but the VerdictRelease subset), so a test reads only
// once the kernel has decided every datagram it sent.
func waitCounted(t testing.TB, f *Filter, before map[string]uint64, n uint64) map[string]uint64 {
	t.Helper()
	var d map[string]uint64
	wait.Until(5*time.Second, func() bool {
		d = delta(before, verdicts(t, f))
		var total uint64
		for k, v := range d {
			if k != VerdictRelease {
				total += v
			}
		}
		return total >= n
	})
	return d
}

// TestRealSocketVerdicts sends good and bad datagrams through real sockets:
// the socket must read exactly the good ones, and the counts must say why
// the others went. It is also what pins where a UDP socket filter's packet
// starts: a wrong offset would show up as "unparsed" or as drops.
func TestRealSocketVerdicts(t *testing.T) {
	realtime.Exclusive(t)
	requireBPF(t)
	now := taiNow(t)
	long := header(wire.TypeAnnounce, 0, 1, 1, wire.MaxDatagram+1-wire.HeaderLen)
	cases := []struct {
		dg   []byte
		want string
	}{
		{release(t, 1, 1, 0, now), VerdictPass},
		{[]byte("hello"), VerdictShort},
		{header(wire.TypeAnnounce, 0, 1, 1, 1100), VerdictPass},
		{[]byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), VerdictMagic},
		{header(wire.TypeAnnounce, 0, 1, 1, wire.MaxDatagram-wire.HeaderLen), VerdictPass},
		{long, VerdictLong},
		{make([]byte, 60000), VerdictLong},
		{header(0x7f, 0, 1, 1, 10), VerdictType},
		{header(wire.TypeHello, 0x0200, 0, 0, 0), VerdictFlags},
		{header(wire.TypeRelease, 0, 1, 2, 10), VerdictLength},
		{release(t, 1, 3, wire.FlagCatchUp, now), VerdictPass},
		{nil, VerdictShort}, // an empty datagram
	}
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			f := newTestFilter(t)
			recv, send := socketPair(t, f, network)
			want := map[string]uint64{}
			var good [][]byte
			for _, c := range cases {
				write(t, send, c.dg)
				want[c.want]++
				if c.want == VerdictPass {
					good = append(good, c.dg)
					if c.dg[offType] == byte(wire.TypeRelease) {
						want[VerdictRelease]++
					}
				}
			}
			got := waitCounted(t, f, nil, uint64(len(cases)))
			if !equalCounts(got, want) {
				t.Errorf("verdicts %v, want %v", got, want)
			}
			dgs, _ := readAll(t, recv, len(good), 2*time.Second)
			if !slices.EqualFunc(dgs, good, bytes.Equal) || !drained(t, recv) {
				t.Errorf("socket read %d datagrams (drained %v), want the %d good ones in order", len(dgs), drained(t, recv), len(good))
			}
		})
	}
}

// TestRealSocketHistogram compares the kernel's skew histogram with the
// user-space fallback fed by SO_TIMESTAMPNS stamps of the same datagrams.
// The kernel's histogram must equal, bucket for bucket, one rebuilt in Go
// from its own first-arrival stamps, and the totals must match. The socket
// stamp is taken a few µs before the filter runs, so a skew near a bucket
// edge may land one bucket over; where the two stamps are much closer than
// a bucket is wide, nearly all must agree.
func TestRealSocketHistogram(t *testing.T) {
	realtime.Exclusive(t)
	requireBPF(t)
	offset := taiOffset(t)
	skews := []time.Duration{-time.Millisecond, 0, 40 * time.Microsecond, 300 * time.Microsecond,
		time.Millisecond, 3 * time.Millisecond, 20 * time.Millisecond, 150 * time.Millisecond,
		700 * time.Millisecond, 3 * time.Second, 30 * time.Second}
	const n = 330
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			f := newTestFilter(t)
			recv, send := socketPair(t, f, network)
			enableStamps(t, recv, send)
			before := verdicts(t, f)
			for i := range n {
				write(t, send, release(t, 2, uint64(i), 0, taiNow(t)-int64(skews[i%len(skews)])))
			}
			write(t, send, release(t, 2, n, wire.FlagCatchUp, taiNow(t))) // not a sample
			waitCounted(t, f, before, n+1)
			dgs, stamps := readAll(t, recv, n+1, 2*time.Second)
			if len(dgs) != n+1 {
				t.Fatalf("read %d datagrams, want %d", len(dgs), n+1)
			}
			var user, rebuilt skew.Histogram
			var close, same int // close: stamps much nearer than a bucket width
			var worst time.Duration
			for i, dg := range dgs {
				var r wire.Release
				if err := r.Decode(dg); err != nil {
					t.Fatal(err)
				}
				if stamps[i] == 0 {
					t.Fatal("no SO_TIMESTAMPNS stamp")
				}
				first, ok, err := f.FirstArrival(r.Stream, r.Period)
				if err != nil {
					t.Fatal(err)
				}
				if r.Flags&wire.FlagCatchUp != 0 {
					if ok {
						t.Error("CATCH-UP RELEASE stamped")
					}
					continue
				}
				if !ok {
					t.Fatalf("no first arrival for (%d, %d)", r.Stream, r.Period)
				}
				arrival := stamps[i] + int64(offset) // SO_TIMESTAMPNS is CLOCK_REALTIME
				us, ks := time.Duration(arrival-r.ReleaseAt), time.Duration(first-r.ReleaseAt)
				user.Add(us)
				rebuilt.Add(ks)
				// The socket stamp is taken when loopback queues the packet,
				// the BPF one when the softirq delivers it: µs apart when idle,
				// more on a loaded machine, never seconds (a clock mix-up).
				diff := ks - us
				if diff < -time.Millisecond || diff > 100*time.Millisecond {
					t.Errorf("period %d: kernel arrival %v after the socket stamp", r.Period, diff)
				}
				worst = max(worst, diff.Abs())
				if lo, hi := skew.BucketBounds(skew.Bucket(us)); diff.Abs()*10 < hi-lo {
					close++
					if skew.Bucket(us) == skew.Bucket(ks) {
						same++
					}
				}
			}
			kernel := histogram(t, f)
			if !slices.Equal(kernel.Counts, rebuilt.Counts) {
				t.Errorf("kernel histogram differs from Bucket of its own stamps\nkernel  %v\nrebuilt %v", kernel, rebuilt)
			}
			if kernel.Total() != user.Total() || kernel.Total() != n {
				t.Fatalf("totals: kernel %d, user %d, want %d", kernel.Total(), user.Total(), n)
			}
			// Where the stamps are under a tenth of a bucket apart, at most
			// about one in ten should straddle an edge.
			switch {
			case close < n/3:
				t.Logf("only %d of %d datagrams had stamps close enough to compare buckets (machine busy?)", close, n)
			case same < close*3/4:
				t.Errorf("only %d of %d comparable datagrams in the same bucket\nkernel %v\nuser   %v", same, close, kernel, user)
			}
			t.Logf("%d of %d comparable datagrams in the same bucket as user space; BPF stamp − socket stamp ≤ %v", same, close, worst)
		})
	}
}

// TestManySockets attaches one Filter to 200 sockets and checks that they
// all count into the same maps.
// TestManySockets: one filter on 200 sockets, each a simulated client
// getting the same period's RELEASE twice (a repeat): every socket's
// first arrival is one skew sample, its repeat none.
func TestManySockets(t *testing.T) {
	realtime.Exclusive(t)
	f := newTestFilter(t)
	const n = 200
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	recvs := make([]*net.UDPConn, n)
	for i := range recvs {
		recvs[i], _ = listenUDP(t, "udp4")
		if err := f.Attach(recvs[i]); err != nil {
			t.Fatalf("Attach socket %d: %v", i, err)
		}
	}
	now := taiNow(t)
	rel := release(t, 3, 0, 0, now)
	for _, r := range recvs {
		to := r.LocalAddr().(*net.UDPAddr)
		for _, dg := range [][]byte{rel, []byte("garbage, not a protocol message"), rel} {
			if _, err := send.WriteToUDP(dg, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := waitCounted(t, f, nil, 3*n)
	if want := map[string]uint64{VerdictPass: 2 * n, VerdictRelease: 2 * n, VerdictMagic: n}; !equalCounts(got, want) {
		t.Errorf("verdicts %v, want %v", got, want)
	}
	for i, r := range recvs {
		dgs, _ := readAll(t, r, 2, 2*time.Second)
		if len(dgs) != 2 || len(dgs[0]) != wire.ReleaseLen || !drained(t, r) {
			t.Fatalf("socket %d read %d datagrams, want its two RELEASEs", i, len(dgs))
		}
	}
	all, err := f.FirstArrivals(3, 0)
	if err != nil || len(all) != n {
		t.Errorf("first arrivals: %d sockets (%v), want %d", len(all), err, n)
	}
	if h := histogram(t, f); h.Total() != n {
		t.Errorf("histogram total %d, want one sample per socket (%d)", h.Total(), n)
	}
}

// TestLossInjector changes the loss rate at run time on a live socket.
func TestLossInjector(t *testing.T) {
	realtime.Exclusive(t)
	f := newTestFilter(t)
	recv, send := socketPair(t, f, "udp4")
	dg := header(wire.TypeAnnounce, 0, 1, 1, 100)
	phase := func(p float64, sent int) (received int) {
		t.Helper()
		if err := f.SetLoss(p); err != nil {
			t.Fatal(err)
		}
		before := verdicts(t, f)
		for range sent {
			write(t, send, dg)
		}
		d := waitCounted(t, f, before, uint64(sent))
		dgs, _ := readAll(t, recv, int(d[VerdictPass]), time.Second)
		received = len(dgs)
		if !drained(t, recv) {
			t.Errorf("loss %v: more datagrams than passed", p)
		}
		if lost := d[VerdictInjectedLoss]; lost != uint64(sent-received) || d[VerdictPass] != uint64(received) {
			t.Errorf("loss %v: sent %d, received %d, counted %v", p, sent, received, d)
		}
		return received
	}
	if got := phase(0, 100); got != 100 {
		t.Errorf("loss 0: received %d of 100", got)
	}
	if got := phase(0.5, 2000); got < 700 || got > 1300 {
		t.Errorf("loss 0.5: received %d of 2000, want 35–65 %%", got)
	}
	if got := phase(1, 100); got != 0 {
		t.Errorf("loss 1: received %d of 100", got)
	}
	if got := phase(0, 100); got != 100 {
		t.Errorf("loss back to 0: received %d of 100", got)
	}
}
