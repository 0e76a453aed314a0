package bench

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/netns"
)

// Place is where one role's sockets live: a function that runs code in
// its network namespace, the multicast group as seen from there, and the
// address its unicast server listens on.
type Place struct {
	Do    func(func() error) error
	Group udp.Group
	Addr  netip.Addr
}

// Topology places a run's edges and receivers.
type Topology struct {
	Edge, Receiver func(i int) Place
	// Where describes the topology in a sentence fragment ("on loopback
	// (multicast …)").
	Where string
	lab   *netns.Lab
}

// LabHosts is how many namespaces Namespaces spreads the receivers over.
const LabHosts = 40

// Loopback puts every role on this host's loopback interface, the group
// being udp.Loopback.
func Loopback() *Topology {
	here := Place{Do: func(f func() error) error { return f() }, Group: udp.Loopback, Addr: netip.MustParseAddr("127.0.0.1")}
	at := func(int) Place { return here }
	return &Topology{Edge: at, Receiver: at, Where: fmt.Sprintf("on loopback (multicast %v)", udp.Loopback)}
}

// Namespaces puts each edge in a network namespace of its own and spreads
// the receivers over LabHosts more (fewer if there are fewer receivers),
// all on one bridge, the group being udp.Loopback's address with hop limit
// 1 (root only). Close deletes the namespaces.
func Namespaces(edges, receivers int) (*Topology, error) {
	hosts := min(receivers, LabHosts)
	lab, err := netns.Build(edges+hosts, nil)
	if err != nil {
		return nil, fmt.Errorf("-netns: %w", err)
	}
	on := func(h *netns.Host) Place {
		g := udp.Group{Addr: udp.Loopback.Addr, Interface: h.Ifname, Hops: 1}
		return Place{Do: h.Do, Group: g, Addr: h.IPv4}
	}
	return &Topology{
		Edge:     func(i int) Place { return on(lab.Host(i)) },
		Receiver: func(i int) Place { return on(lab.Host(edges + i%hosts)) },
		Where:    fmt.Sprintf("across %d network namespaces on a bridge (edges on %d of them, multicast %v with hop limit 1)", edges+hosts, edges, udp.Loopback.Addr),
		lab:      lab,
	}, nil
}

// Close deletes a Namespaces topology's namespaces; it does nothing for
// Loopback's.
func (t *Topology) Close() error {
	if t.lab == nil {
		return nil
	}
	return t.lab.Close()
}

// Wire sets cfg's Sender, Serve, Listen and Dial so that each role opens
// its sockets in its place, every receiver source passing through wrap
// (if not nil) — a lossy link, say.
func (t *Topology) Wire(cfg *Config, wrap func(receiver int, s receiver.Source) receiver.Source) {
	if wrap == nil {
		wrap = func(_ int, s receiver.Source) receiver.Source { return s }
	}
	stream := cmp.Or(cfg.Stream, 1)
	cfg.Sender = func(i int) (s edge.Sender, err error) {
		p := t.Edge(i)
		err = p.Do(func() (err error) { s, err = udp.NewSender(p.Group); return err })
		return s, err
	}
	cfg.Serve = func(i int, sc unicast.ServerConfig) (s *unicast.Server, err error) {
		p := t.Edge(i)
		sc.Listen = netip.AddrPortFrom(p.Addr, 0)
		err = p.Do(func() (err error) { s, err = unicast.NewServer(sc); return err })
		return s, err
	}
	cfg.Listen = func(i int) (receiver.Source, error) {
		p := t.Receiver(i)
		var c *udp.Conn
		if err := p.Do(func() (err error) { c, err = udp.Listen(p.Group); return err }); err != nil {
			return nil, err
		}
		return wrap(i, c), nil
	}
	cfg.Dial = func(i int, e netip.AddrPort) (receiver.Source, error) {
		var c *subscriber.Client
		err := t.Receiver(i).Do(func() (err error) {
			c, err = subscriber.Dial(subscriber.Config{Edge: e, Streams: []uint32{stream}, Retry: 50 * time.Millisecond})
			return err
		})
		if err != nil {
			return nil, err
		}
		return wrap(i, c), nil
	}
}
