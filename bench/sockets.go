package bench

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/seal"
)

// This file opens a run's roles: edges with their senders and unicast
// servers, receivers with their sources.

func openEdges(cfg *Config, ring *seal.KeyRing, on func(edge.Report)) ([]*edge.Edge, []*unicast.Server, func(), error) {
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	edges := make([]*edge.Edge, cfg.Edges)
	var servers []*unicast.Server
	for i := range edges {
		s, err := cfg.Sender(i)
		if err != nil {
			return nil, nil, closeAll, fmt.Errorf("bench: edge %d: %w", i, err)
		}
		if c, ok := s.(interface{ Close() error }); ok {
			closers = append(closers, c.Close)
		}
		senders := []edge.Sender{s}
		var srv *unicast.Server
		if cfg.Unicast > 0 {
			srv, err = cfg.Serve(i, unicast.ServerConfig{
				Listen: cfg.UnicastListen(i), Clock: cfg.Clock, Logger: cfg.Logger, Naive: cfg.UnicastNaive,
				// Every receiver subscribes from one loopback address, as
				// from behind one large NAT: all of them at once, and each renews.
				Sessions: unicast.SessionConfig{Streams: []uint32{cfg.Stream}, MaxPerAddress: cfg.Receivers, SubscribeRate: cfg.Receivers, SubscribeBurst: cfg.Receivers},
			})
			if err != nil {
				return nil, nil, closeAll, fmt.Errorf("bench: edge %d: %w", i, err)
			}
			closers = append(closers, srv.Close)
			servers = append(servers, srv)
			senders = append(senders, srv)
		}
		clock := cfg.Clock
		if cfg.EdgeClock != nil {
			clock = cfg.EdgeClock(i)
		}
		e, err := edge.New(edge.Config{
			ID: uint32(i + 1), Clock: clock, Trusted: ring, Senders: senders,
			Lead: cfg.Lead, Rounds: cfg.Rounds, Repeat: cfg.Repeat, Logger: cfg.Logger, OnRelease: on,
		})
		if err != nil {
			return nil, nil, closeAll, err
		}
		edges[i] = e
	}
	return edges, servers, closeAll, nil
}

func closeAll(srcs []receiver.Source) {
	for _, s := range srcs {
		s.Close()
	}
}

func openReceivers(cfg *Config, ring *seal.KeyRing, master []byte, servers []*unicast.Server, on func(int, receiver.Event)) ([]*receiver.Receiver, [][]receiver.Source, error) {
	recvs := make([]*receiver.Receiver, cfg.Receivers)
	srcs := make([][]receiver.Source, 0, cfg.Receivers)
	fail := func(err error) ([]*receiver.Receiver, [][]receiver.Source, error) {
		for _, s := range srcs {
			closeAll(s)
		}
		return nil, nil, err
	}
	for i := range recvs {
		m := master
		if slices.Contains(cfg.NoMaster, i) {
			m = nil
		}
		r, err := receiver.New(receiver.Config{
			Trusted: ring, Master: m, Streams: []uint32{cfg.Stream}, TAIOffset: cfg.TAIOffset,
			OnEvent: func(ev receiver.Event) {
				if cfg.Filter != nil {
					cfg.Filter.Confirm(ev.Stream, ev.Period, &ev.RK, ev.ReleaseAt)
				}
				on(i, ev)
			}, Logger: cfg.Logger,
		})
		if err != nil {
			return fail(err)
		}
		var mine []receiver.Source
		if i < cfg.Receivers-cfg.Unicast {
			s, err := cfg.Listen(i)
			if err != nil {
				return fail(fmt.Errorf("bench: receiver %d: %w", i, err))
			}
			mine = append(mine, s)
		} else {
			for _, srv := range servers {
				s, err := cfg.Dial(i, srv.Addr())
				if err != nil {
					closeAll(mine)
					return fail(fmt.Errorf("bench: receiver %d: %w", i, err))
				}
				mine = append(mine, s)
			}
		}
		srcs = append(srcs, mine)
		for _, s := range mine {
			if c, ok := s.(syscall.Conn); ok && cfg.Filter != nil {
				if err := cfg.Filter.Attach(c); err != nil {
					return fail(fmt.Errorf("bench: receiver %d: %w", i, err))
				}
			}
		}
		recvs[i] = r
	}
	return recvs, srcs, nil
}

// subscribed waits until every server holds n subscriptions. The server
// announces no subscriptions, so this is the one poll left: it runs before
// the schedule exists, so its pace cannot cost a receiver a period.
func subscribed(ctx context.Context, servers []*unicast.Server, n int) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, srv := range servers {
		for srv.Sessions().Stats().Subscribers < n {
			select {
			case <-ctx.Done():
				return fmt.Errorf("bench: %d of %d unicast receivers subscribed to %v", srv.Sessions().Stats().Subscribers, n, srv.Addr())
			case <-tick.C:
			}
		}
	}
	return nil
}

// subscribeTimeout bounds the subscription handshakes of every unicast
// receiver (a few round trips each on loopback or a bridge), or every
// browser's session: 10,000 of them on a shared 2-core VM took over 10 s.
const subscribeTimeout = 30 * time.Second
