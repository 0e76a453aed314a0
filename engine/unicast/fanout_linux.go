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
)

const (
	// maxBatch is the most messages one sendmmsg carries (UIO_MAXIOV).
	maxBatch = 1024
	// minShare is the fewest destinations worth handing to another thread.
	minShare = 512
)

// planner keeps, per stream, the prepared sendmmsg headers for every
// subscriber: the datagram is the same for all, only the destination
// differs, so a send fills one iovec and makes the syscalls.
type planner struct {
	s       *Server
	mu      sync.Mutex
	plans   map[uint32]*plan
	workers []chan job
	closed  bool
}

type plan struct {
	gen    uint64
	dsts   []netip.AddrPort // reused across rebuilds
	n      int
	names4 []unix.RawSockaddrInet4
	names6 []unix.RawSockaddrInet6
	hdrs   []unix.Mmsghdr
	iov    unix.Iovec // every header points here
}

// job is one worker's share of a send: runs of headers, in order.
type job struct {
	runs [][]unix.Mmsghdr
	done *sync.WaitGroup
	errs *[]error
	mu   *sync.Mutex
}

// newPlanner starts a worker for every socket but the first: the caller's
// goroutine sends the first share itself on the first socket, so a small
// fan-out (or a one-socket server) waits for no thread to wake up.
func newPlanner(s *Server) *planner {
	p := &planner{s: s, plans: make(map[uint32]*plan)}
	for _, sk := range s.socks[1:] {
		c := make(chan job)
		p.workers = append(p.workers, c)
		go worker(sk, c, &s.sent, &s.sendErrs)
	}
	return p
}

// worker sends jobs on one socket from its own OS thread, until the
// server's sockets close and its channel is dropped with the server.
func worker(sk *socket, jobs <-chan job, sent, errs counter) {
	runtime.LockOSThread()
	for j := range jobs {
		j.run(sk, sent, errs)
		j.done.Done()
	}
}

type counter interface{ Add(uint64) uint64 }

func (j job) run(sk *socket, sent, errs counter) {
	for _, run := range j.runs {
		n, failed, err := sendAll(sk.rc, run)
		sent.Add(uint64(n))
		if failed > 0 {
			errs.Add(uint64(failed))
			j.mu.Lock()
			*j.errs = append(*j.errs, err)
			j.mu.Unlock()
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
	rotated := [][]unix.Mmsghdr{pl.hdrs[start:pl.n], pl.hdrs[:start]}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	// Small fan-outs stay on the caller: waking threads costs more.
	share := max((pl.n+len(p.s.socks)-1)/len(p.s.socks), minShare)
	mine := job{runs: take(&rotated, share), done: &wg, errs: &errs, mu: &mu}
	for _, w := range p.workers {
		runs := take(&rotated, share)
		if len(runs) == 0 {
			break
		}
		wg.Add(1)
		w <- job{runs: runs, done: &wg, errs: &errs, mu: &mu}
	}
	mine.run(p.s.socks[0], &p.s.sent, &p.s.sendErrs)
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

// take removes up to n headers from the front of runs.
func take(runs *[][]unix.Mmsghdr, n int) [][]unix.Mmsghdr {
	var out [][]unix.Mmsghdr
	for n > 0 && len(*runs) > 0 {
		r := (*runs)[0]
		if len(r) == 0 {
			*runs = (*runs)[1:]
			continue
		}
		k := min(n, len(r))
		out = append(out, r[:k])
		(*runs)[0] = r[k:]
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
	pl.dsts, pl.gen = p.s.sessions.Destinations(pl.dsts[:0], stream)
	pl.build(pl.dsts, p.s.v6)
	return pl
}

// build lays out one sockaddr and one header per destination.
func (pl *plan) build(dsts []netip.AddrPort, v6 bool) {
	pl.n = len(dsts)
	if cap(pl.hdrs) < len(dsts) {
		pl.hdrs = make([]unix.Mmsghdr, len(dsts))
		pl.names4 = make([]unix.RawSockaddrInet4, len(dsts))
		pl.names6 = make([]unix.RawSockaddrInet6, len(dsts))
	}
	pl.hdrs = pl.hdrs[:len(dsts)]
	for i, d := range dsts {
		h := &pl.hdrs[i].Hdr
		*h = unix.Msghdr{Iov: &pl.iov}
		h.SetIovlen(1)
		if v6 {
			sa := &pl.names6[i]
			*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: d.Addr().As16()}
			putPort(&sa.Port, d.Port())
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet6
			continue
		}
		sa := &pl.names4[i]
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: d.Addr().Unmap().As4()}
		putPort(&sa.Port, d.Port())
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet4
	}
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}
