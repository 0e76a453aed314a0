package device

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/embargo-live/embargo/engine/datagram"
)

// counted is a source that counts the datagrams it reads and remembers
// a few of the addresses they came from, so that a device can say where
// the datagrams it could not use came from.
type counted struct {
	datagram.Source
	n    atomic.Uint64
	mu   sync.Mutex
	from []netip.Addr // at most maxFrom, first seen first
}

const maxFrom = 4

func (c *counted) ReadBatch(ms []datagram.Message) (int, error) {
	n, err := c.Source.ReadBatch(ms)
	if n <= 0 {
		return n, err
	}
	c.n.Add(uint64(n))
	c.mu.Lock()
	for i := range ms[:n] {
		if a := ms[i].From.Addr().Unmap(); len(c.from) < maxFrom && !slices.Contains(c.from, a) {
			c.from = append(c.from, a)
		}
	}
	c.mu.Unlock()
	return n, err
}

func (c *counted) addrs() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.from)
}

// diagnosis is the state Diagnose compares against.
type diagnosis struct {
	mu        sync.Mutex
	arrived   uint64
	delivered uint64
	drops     map[string]uint64
}

// Diagnose says, in one line naming the likely fix, why the device
// delivered no period since the last call although datagrams arrived —
// they fail verification (a wrong origin key), their keys do not unwrap (a
// wrong master key), there is no master key — or that nothing arrived at
// all. It returns "" when a period was delivered since the last call, or
// when nothing points to a fault yet (bodies arriving ahead of their
// release). A caller calls it every two periods or so.
func (d *Device) Diagnose() string {
	st := d.r.Stats()
	var arrived uint64
	var from []string
	for _, c := range d.counted {
		arrived += c.n.Load()
		for _, a := range c.addrs() {
			if s := a.String(); !slices.Contains(from, s) {
				from = append(from, s)
			}
		}
	}
	d.diag.mu.Lock()
	defer d.diag.mu.Unlock()
	delta := func(reasons ...string) uint64 {
		var n uint64
		for _, r := range reasons {
			n += st.Drops[r] - d.diag.drops[r]
		}
		return n
	}
	newArrivals, delivered := arrived-d.diag.arrived, st.Delivered-d.diag.delivered
	forged := delta("forged", "bad-signature", "bad-proof", "conflict", "bad-body")
	unwrap, noMaster, wrongRK := delta("unwrap-failed"), delta("no-master-key"), delta("wrong-rk")
	foreign := delta("foreign-source")
	d.diag.arrived, d.diag.delivered, d.diag.drops = arrived, st.Delivered, st.Drops
	src := strings.Join(from, ", ")
	switch {
	case delivered > 0:
		return ""
	case newArrivals == 0:
		return fmt.Sprintf("no datagram arrived from %s: is an edge sending there (right group, port, interface; edge up)?", d.desc)
	case foreign >= newArrivals:
		return fmt.Sprintf("%d datagrams from %s were dropped: their address is not among the edges' (-from): add the edge's address", foreign, src)
	case forged > 0:
		return fmt.Sprintf("%d datagrams from %s failed verification: wrong origin key (-pub, or the session's)?", forged, src)
	case unwrap > 0:
		return fmt.Sprintf("%d periods from %s verified but their content keys did not unwrap: wrong master key (-master)?", unwrap, src)
	case wrongRK > 0:
		return fmt.Sprintf("%d RELEASEs from %s did not open their period's commitment: an edge of another origin, or a forged RELEASE?", wrongRK, src)
	case noMaster > 0:
		return fmt.Sprintf("%d periods from %s verified, but there is no master key to unwrap them (-master, or -token with -session)", noMaster, src)
	}
	return ""
}
