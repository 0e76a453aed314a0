//go:build linux

package faults

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/wire"
)

// The early-release-before-shards scenario needs RELEASEs that reach a
// receiver before any ANNOUNCE shard of their period — as they do for a
// receiver that lost the carousel's rounds, or joined late. A child
// receiver given fgLateEnv holds back every ANNOUNCE datagram until
// fgLateDelay after its period's releaseAt (fgLate), so that each genuine
// RELEASE waits in the early queue, under the flood, for that long. The
// control receiver holds them back too: it shows that the delay alone
// costs no period.
const (
	fgLateEnv   = "EMBARGO_FORGED_LATE" // "epoch period" of the lab's schedule, in ns
	fgLateDelay = 60 * time.Millisecond // well inside the lab's 400 ms to presentAt
)

// fgEarlyReleasesBeforeShards: RELEASEs with random secrets for the
// period just released and the next two, none of whose shards the
// receivers hold: each genuine RELEASE arrives amid them and waits
// fgLateDelay for its body.
func fgEarlyReleasesBeforeShards(f *fgAttack, b []byte, now int64, i int) []byte {
	n := f.l.sched.Current(now) + uint64(i%3)
	f.periods[n] = true
	f.nonce++
	r := wire.Release{Header: wire.Header{Stream: stream, Period: n}, ReleaseAt: f.l.sched.At(n).ReleaseAt, SentAt: now, EdgeID: 66}
	r.RK = sha256.Sum256(binary.BigEndian.AppendUint64(nil, f.nonce))
	return atkEncode(b, &r)
}

// fgEarlyQueueCheck: the forged secrets were held off (dropped as busy)
// and cost no signature check.
func fgEarlyQueueCheck(t *testing.T, f *fgAttack, st receiver.Stats, flood time.Duration) {
	fgEarlyCheck(t, f, st, flood)
	if st.Drops["busy"] == 0 {
		t.Errorf("the flood never contested the early queue (no busy drops): %v", st.Drops)
	}
}

// fgLateEnviron is the child environment entry that turns fgLate on.
func fgLateEnviron(s origin.Schedule) string {
	return fmt.Sprintf("%s=%d %d", fgLateEnv, s.Epoch, int64(s.Period))
}

// fgLateSources wraps src, when the child's environment asks for it, in
// the two sources of an fgLate; otherwise it returns src.
func fgLateSources(src receiver.Source) ([]receiver.Source, error) {
	v := os.Getenv(fgLateEnv)
	if v == "" {
		return []receiver.Source{src}, nil
	}
	var sched origin.Schedule
	var period int64
	if _, err := fmt.Sscanf(v, "%d %d", &sched.Epoch, &period); err != nil {
		return nil, fmt.Errorf("%s=%q: %w", fgLateEnv, v, err)
	}
	sched.Period = time.Duration(period)
	l := &fgLate{inner: src, due: func(p uint64) int64 { return sched.At(p).ReleaseAt + int64(fgLateDelay) },
		wake: make(chan struct{}, 1), closed: make(chan struct{})}
	return []receiver.Source{fgLateFront{l}, fgLateBack{l}}, nil
}

// fgLate holds back ANNOUNCE datagrams until their period's due time:
// its front reads the socket and keeps them, its back hands them to the
// receiver when due.
type fgLate struct {
	inner     receiver.Source
	due       func(period uint64) int64
	mu        sync.Mutex
	held      []fgHeld // by due time
	wake      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

type fgHeld struct {
	due  int64
	d    []byte
	from netip.AddrPort
}

type fgLateFront struct{ *fgLate }

// ReadBatch returns the socket's datagrams but the ANNOUNCEs not yet due.
func (f fgLateFront) ReadBatch(ms []datagram.Message) (int, error) {
	for {
		n, err := f.inner.ReadBatch(ms)
		if err != nil {
			return 0, err
		}
		if n = datagram.Keep(ms, n, func(m *datagram.Message) bool { return !f.hold(m) }); n > 0 {
			return n, nil
		}
	}
}

func (f fgLateFront) Close() error { f.close(); return f.inner.Close() }

// hold keeps a copy of m if it is an ANNOUNCE not yet due.
func (l *fgLate) hold(m *datagram.Message) bool {
	h, err := wire.Peek(m.Buf[:m.N])
	if err != nil || h.Type != wire.TypeAnnounce {
		return false
	}
	due := l.due(h.Period)
	if truth() >= due {
		return false
	}
	l.mu.Lock()
	i, _ := slices.BinarySearchFunc(l.held, due, func(x fgHeld, due int64) int { return cmp.Compare(x.due, due) })
	l.held = slices.Insert(l.held, i, fgHeld{due: due, d: slices.Clone(m.Buf[:m.N]), from: m.From})
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

func (l *fgLate) close() { l.closeOnce.Do(func() { close(l.closed) }) }

type fgLateBack struct{ *fgLate }

// ReadBatch waits for held datagrams to fall due and returns them.
func (b fgLateBack) ReadBatch(ms []datagram.Message) (int, error) {
	for {
		b.mu.Lock()
		now, n := truth(), 0
		for n < len(ms) && n < len(b.held) && b.held[n].due <= now {
			ms[n].N = copy(ms[n].Buf, b.held[n].d)
			ms[n].From, ms[n].Arrival, ms[n].Truncated = b.held[n].from, time.Time{}, false
			n++
		}
		b.held = slices.Delete(b.held, 0, n)
		wait := time.Hour
		if len(b.held) > 0 {
			wait = time.Duration(b.held[0].due - now)
		}
		b.mu.Unlock()
		if n > 0 {
			return n, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-b.closed:
			t.Stop()
			return 0, net.ErrClosed
		case <-b.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (b fgLateBack) Close() error { b.close(); return nil }
