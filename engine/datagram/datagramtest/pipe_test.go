package datagramtest_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/datagram/datagramtest"
)

var from = netip.MustParseAddrPort("192.0.2.1:7171")

func messages(n, size int) []datagram.Message {
	ms := make([]datagram.Message, n)
	for i := range ms {
		ms[i].Buf = make([]byte, size)
	}
	return ms
}

// read runs one ReadBatch in a goroutine and reports its result.
type result struct {
	n   int
	err error
}

func read(p *datagramtest.Pipe, ms []datagram.Message) <-chan result {
	c := make(chan result, 1)
	go func() {
		n, err := p.ReadBatch(ms)
		c <- result{n, err}
	}()
	return c
}

// TestReadBlocksUntilSend: a read blocks (durably: virtual time passes)
// until a datagram is sent, then returns it with its stamp and sender.
func TestReadBlocksUntilSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := datagramtest.New()
		ms := messages(4, 16)
		c := read(p, ms)
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case r := <-c:
			t.Fatalf("read returned %+v with nothing sent", r)
		default:
		}
		stamp := time.Now().Add(-time.Millisecond)
		if err := p.Send([]byte("abc"), stamp, from); err != nil {
			t.Fatal(err)
		}
		r := <-c
		if r.err != nil || r.n != 1 {
			t.Fatalf("read %+v", r)
		}
		m := ms[0]
		if string(m.Buf[:m.N]) != "abc" || !m.Arrival.Equal(stamp) || m.From != from || m.Truncated {
			t.Fatalf("message %+v", m)
		}
	})
}

// TestBatchOrderAndTruncation: queued datagrams come out in order, at most
// len(ms) a read, cut to the buffer and marked when too long; a datagram
// sent without a stamp arrives with the zero Time.
func TestBatchOrderAndTruncation(t *testing.T) {
	p := datagramtest.New()
	for i := range 5 {
		if err := p.Send(make([]byte, i+1), time.Time{}, from); err != nil {
			t.Fatal(err)
		}
	}
	ms := messages(3, 4)
	if n, err := p.ReadBatch(ms); err != nil || n != 3 {
		t.Fatalf("first read: %d, %v", n, err)
	}
	for i, m := range ms {
		if m.N != i+1 || m.Truncated || !m.Arrival.IsZero() {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	n, err := p.ReadBatch(ms)
	if err != nil || n != 2 || ms[0].N != 4 || ms[0].Truncated || ms[1].N != 4 || !ms[1].Truncated {
		t.Fatalf("second read: %d, %v, %+v", n, err, ms[:2])
	}
}

// TestFail: queued datagrams are read first, then the error, on every
// read.
func TestFail(t *testing.T) {
	p := datagramtest.New()
	boom := errors.New("boom")
	if err := p.Send([]byte{1}, time.Time{}, from); err != nil {
		t.Fatal(err)
	}
	p.Fail(boom)
	ms := messages(2, 4)
	if n, err := p.ReadBatch(ms); n != 1 || err != nil {
		t.Fatalf("read %d, %v; want the queued datagram first", n, err)
	}
	for range 2 {
		if n, err := p.ReadBatch(ms); n != 0 || !errors.Is(err, boom) {
			t.Fatalf("read %d, %v; want %v", n, err, boom)
		}
	}
}

// TestClose: Close unblocks a blocked read with net.ErrClosed, later reads
// fail the same way with datagrams still queued, and Send refuses.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := datagramtest.New()
		ms := messages(1, 4)
		c := read(p, ms)
		synctest.Wait()
		if p.Closed() {
			t.Fatal("closed before Close")
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if r := <-c; r.n != 0 || !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("blocked read after Close: %+v", r)
		}
		if err := p.Send([]byte{1}, time.Time{}, from); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Send after Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		select {
		case <-p.Done():
		default:
			t.Fatal("Done not closed")
		}
		if !p.Closed() {
			t.Fatal("Closed false after Close")
		}
	})
	p := datagramtest.New()
	if err := p.Send([]byte{1}, time.Time{}, from); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n, err := p.ReadBatch(messages(1, 4)); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close with a datagram queued: %d, %v", n, err)
	}
}
