package unicast

import (
	"cmp"
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/ptp"
)

// ServerConfig configures a Server. Listen and Sessions.Streams are required.
type ServerConfig struct {
	// Listen is the address subscribers send to, e.g. [::]:7272; every
	// datagram to a subscriber leaves from it, so that NATs let it in.
	Listen netip.AddrPort
	// Senders is the number of sockets and OS threads the fan-out uses
	// (default runtime.NumCPU()).
	Senders int
	// Priority, from 1 to 99, runs the release fan-out's sender threads
	// at SCHED_FIFO, where the process may (CAP_SYS_NICE; see
	// ptp.ProbeRealtime), so that a busy machine's ordinary threads
	// cannot pre-empt them mid-release. The calling thread sends the
	// first share: give the edge's Waiter (ptp.Precise) the same
	// priority. Announcements and catch-up keep normal priority. Zero
	// (the default) never asks.
	Priority int
	Sessions SessionConfig
	// History serves catch-up; edge.New sets it to the edge that sends
	// through this server. Without it there is no catch-up.
	History edge.History
	// Clock is the edge's: catch-up re-checks each period against its
	// earliest time. Required.
	Clock  ptp.Clock
	Logger *slog.Logger
	// CatchUpBudget and CatchUpPerAddress bound the catch-up bytes sent
	// per second in all and to one IPv4 address or IPv6 prefix (defaults
	// DefaultCatchUpBudget, DefaultCatchUpPerAddress). A catch-up that
	// does not fit is not sent (counted); the subscription stands.
	CatchUpBudget, CatchUpPerAddress int
	// Naive sends each datagram to each subscriber with its own sendto on
	// one socket, as a plain server would: a baseline for benchmarks to
	// compare the prepared sendmmsg fan-out against, never for service.
	Naive bool
}

// ServerStats are a server's counters.
type ServerStats struct {
	Sessions SessionStats
	// Sent counts datagrams fanned out to subscribers, SendErrors the
	// ones the kernel refused.
	Sent, SendErrors uint64
	// CatchUp counts datagrams sent as catch-up, CatchUpBytes their
	// bytes; CatchUpRefused the catch-ups not sent, by reason
	// ("queue-full", "address-budget", "global-budget").
	CatchUp, CatchUpBytes uint64
	CatchUpRefused        map[string]uint64
	// LaunchTime says why SO_TXTIME launch-time sending is or is not used.
	LaunchTime string
}

// Catch-up defaults: a full catch-up (16 periods of a stream at the default
// geometry) is some 60 KB.
const (
	DefaultCatchUpBudget     = 32 << 20
	DefaultCatchUpPerAddress = 256 << 10
	// catchUpQueue is how many catch-ups may wait for the sender.
	catchUpQueue = 256
)

func (c *ServerConfig) defaults() {
	c.CatchUpBudget = cmp.Or(c.CatchUpBudget, DefaultCatchUpBudget)
	c.CatchUpPerAddress = cmp.Or(c.CatchUpPerAddress, DefaultCatchUpPerAddress)
	if c.Senders <= 0 {
		c.Senders = runtime.NumCPU()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// sweepEvery is how often expired subscriptions are dropped.
const sweepEvery = time.Second

// sweep drops expired subscriptions until ctx ends.
func sweep(ctx context.Context, s *Sessions) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Expire(now)
		}
	}
}
