package unicast

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/ptp"
)

const (
	// maxBatch is the most messages one sendmmsg carries (UIO_MAXIOV).
	maxBatch = 1024
	// minShare is the fewest destinations worth handing to another thread.
	minShare = 512
)

// planner keeps, per stream, the prepared socket address of every
// subscriber: the datagram is the same for all, only the destination
// differs, so a send fills one iovec, lays the sendmmsg headers over the
// addresses a batch at a time, and makes the syscalls. Only the addresses
// are kept per subscriber (16 bytes, or 28 on an IPv6 server): a header
// per subscriber would be 64 more, per stream and per planner.
type planner struct {
	s       *Server
	mu      sync.Mutex
	plans   map[uint32]*plan
	workers []chan job
	closed  bool
	hdrs    []unix.Mmsghdr // the caller's batch of headers (send holds mu)
}

type plan struct {
	gen    uint64
	n      int
	names4 []unix.RawSockaddrInet4 // on an IPv4 server
	names6 []unix.RawSockaddrInet6 // on an IPv6 server
	iov    unix.Iovec              // every header points here
}

// span is a run of a plan's destinations, [lo, hi).
type span struct{ lo, hi int }

// job is one worker's share of a send: runs of destinations, in order.
type job struct {
	pl   *plan
	runs []span
	done *sync.WaitGroup
	errs *[]error
	mu   *sync.Mutex
}

// newPlanner starts a worker for every socket but the first: the caller's
// goroutine sends the first share itself on the first socket, so a small
// fan-out (or a one-socket server) waits for no thread to wake up. The
// workers' threads run at SCHED_FIFO prio where it is from 1 to 99 and
// permitted.
func newPlanner(s *Server, prio int) *planner {
	p := &planner{s: s, plans: make(map[uint32]*plan), hdrs: make([]unix.Mmsghdr, maxBatch)}
	for _, sk := range s.socks[1:] {
		c := make(chan job)
		p.workers = append(p.workers, c)
		go worker(sk, c, &s.sent, &s.sendErrs, prio)
	}
	return p
}

// worker sends jobs on one socket from its own OS thread, until the
// server's sockets close and its channel is dropped with the server. At
// real-time priority the thread waits for jobs blocked, costing no CPU,
// and runs only while it sends.
func worker(sk *socket, jobs <-chan job, sent, errs counter, prio int) {
	serve := func() {
		hdrs := make([]unix.Mmsghdr, maxBatch)
		for j := range jobs {
			j.run(sk, hdrs, sent, errs)
			j.done.Done()
		}
	}
	if (ptp.Precise{Priority: prio}).Realtime(serve) {
		return
	}
	runtime.LockOSThread()
	serve()
}

type counter interface{ Add(uint64) uint64 }

// run sends the job's runs on sk, len(hdrs) destinations at a time.
func (j job) run(sk *socket, hdrs []unix.Mmsghdr, sent, errs counter) {
	for _, r := range j.runs {
		for lo := r.lo; lo < r.hi; lo += len(hdrs) {
			n, failed, err := sendAll(sk.rc, j.pl.headers(hdrs, lo, min(r.hi, lo+len(hdrs))))
			sent.Add(uint64(n))
			if failed > 0 {
				errs.Add(uint64(failed))
				j.mu.Lock()
				*j.errs = append(*j.errs, err)
				j.mu.Unlock()
			}
		}
	}
}

// sendAll sends every header, skipping (and counting) the ones the kernel
// refuses, and returns how many went.
func sendAll(rc syscall.RawConn, hdrs []unix.Mmsghdr) (sent, failed int, first error) {
	for len(hdrs) > 0 {
		batch := hdrs[:min(len(hdrs), maxBatch)]
		var n int
		var errno syscall.Errno
		err := rc.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&batch[0])), uintptr(len(batch)), 0, 0, 0)
			if e == unix.EAGAIN {
				return false
			}
			n, errno = int(r), e
			return true
		})
		switch {
		case err != nil:
			return sent, failed + len(hdrs), err
		case errno != 0:
			// The first message failed: skip it and go on with the rest.
			failed++
			if first == nil {
				first = errno
			}
			hdrs = hdrs[1:]
		default:
			sent += n
			hdrs = hdrs[n:]
		}
	}
	return sent, failed, first
}

// send fans d out to the subscribers of stream, spread over the workers,
// starting at a random subscriber so that nobody is always first.
func (p *planner) send(stream uint32, d []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	if p.s.cfg.Naive {
		return p.sendNaive(stream, d)
	}
	pl := p.plan(stream)
	if pl.n == 0 {
		return nil
	}
	pl.iov.Base = &d[0]
	pl.iov.SetLen(len(d))
	start := rand.IntN(pl.n)
	rotated := []span{{start, pl.n}, {0, start}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	// Small fan-outs stay on the caller: waking threads costs more.
	share := max((pl.n+len(p.s.socks)-1)/len(p.s.socks), minShare)
	mine := job{pl: pl, runs: take(&rotated, share), done: &wg, errs: &errs, mu: &mu}
	for _, w := range p.workers {
		runs := take(&rotated, share)
		if len(runs) == 0 {
			break
		}
		wg.Add(1)
		w <- job{pl: pl, runs: runs, done: &wg, errs: &errs, mu: &mu}
	}
	mine.run(p.s.socks[0], p.hdrs, &p.s.sent, &p.s.sendErrs)
	wg.Wait()
	runtime.KeepAlive(d)
	return errors.Join(errs...)
}

// sendNaive is the baseline: one sendto per subscriber, in table order,
// on the first socket, with no preparation.
func (p *planner) sendNaive(stream uint32, d []byte) error {
	dsts, _ := p.s.sessions.Destinations(nil, stream)
	var first error
	for _, a := range dsts {
		if _, err := p.s.socks[0].conn.WriteToUDPAddrPort(d, a); err != nil {
			p.s.sendErrs.Add(1)
			if first == nil {
				first = err
			}
			continue
		}
		p.s.sent.Add(1)
	}
	return first
}

// close stops the workers once no send is in flight.
func (p *planner) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, w := range p.workers {
		close(w)
	}
}

// take removes up to n destinations from the front of runs.
func take(runs *[]span, n int) []span {
	var out []span
	for n > 0 && len(*runs) > 0 {
		r := (*runs)[0]
		if r.lo == r.hi {
			*runs = (*runs)[1:]
			continue
		}
		k := min(n, r.hi-r.lo)
		out = append(out, span{r.lo, r.lo + k})
		(*runs)[0].lo += k
		n -= k
	}
	return out
}

// plan returns stream's plan, rebuilt if the subscribers changed.
func (p *planner) plan(stream uint32) *plan {
	pl := p.plans[stream]
	if pl != nil && pl.gen == p.s.sessions.Generation() {
		return pl
	}
	if pl == nil {
		pl = &plan{}
		p.plans[stream] = pl
	}
	pl.gen = p.s.sessions.Each(stream, pl.size(p.s.v6), pl.adder(p.s.v6))
	pl.n = max(len(pl.names4), len(pl.names6))
	return pl
}

// size empties the plan and makes room for n destinations of the
// server's family only, reusing the arrays unless they are short or far
// too long: memory per subscriber is a budget (BenchmarkEdgeMemory), and
// a plan rebuilt for every joining subscriber must not copy itself each
// time.
func (pl *plan) size(v6 bool) func(n int) {
	return func(n int) {
		if v6 {
			pl.names4, pl.names6 = nil, resize(pl.names6, n)
		} else {
			pl.names4, pl.names6 = resize(pl.names4, n), nil
		}
	}
}

// resize returns s emptied, with room for n.
func resize[T any](s []T, n int) []T {
	if c := cap(s); c < n || c > n+n/4+minShare {
		return make([]T, 0, n+n/16)
	}
	return s[:0]
}

// adder returns what adds a destination to the plan.
func (pl *plan) adder(v6 bool) func(netip.AddrPort) {
	if v6 {
		return func(d netip.AddrPort) {
			sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: d.Addr().As16()}
			putPort(&sa.Port, d.Port())
			pl.names6 = append(pl.names6, sa)
		}
	}
	return func(d netip.AddrPort) {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: d.Addr().Unmap().As4()}
		putPort(&sa.Port, d.Port())
		pl.names4 = append(pl.names4, sa)
	}
}

// build makes the plan of dsts (for benchmarks).
func (pl *plan) build(dsts []netip.AddrPort, v6 bool) {
	pl.size(v6)(len(dsts))
	add := pl.adder(v6)
	for _, d := range dsts {
		add(d)
	}
	pl.n = len(dsts)
}

// headers lays out the sendmmsg headers of destinations [lo, hi) in hdrs
// and returns them: each points at its socket address and the plan's
// iovec.
func (pl *plan) headers(hdrs []unix.Mmsghdr, lo, hi int) []unix.Mmsghdr {
	b := hdrs[:hi-lo]
	for i := range b {
		b[i] = unix.Mmsghdr{Hdr: unix.Msghdr{Iov: &pl.iov}}
		h := &b[i].Hdr
		h.SetIovlen(1)
		if len(pl.names6) > 0 {
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(&pl.names6[lo+i])), unix.SizeofSockaddrInet6
		} else {
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(&pl.names4[lo+i])), unix.SizeofSockaddrInet4
		}
	}
	return b
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}
