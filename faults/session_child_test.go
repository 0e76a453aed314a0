//go:build linux

package faults

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/wire"
)

// The session attacks' receivers run as child processes, as the forged
// scenarios' do: this test binary, re-run as TestSessionReceiverChild
// inside a lab host's namespace, subscribes to the edge over unicast and
// speaks fgChildProc's line protocol, plus "observe" → K <the last
// KEEPALIVE it sent, hex>: what an on-path observer of the victim sees.
const (
	sesChild      = "EMBARGO_SES_CHILD"
	sesChildEdge  = "EMBARGO_SES_EDGE"  // the edge's unicast address
	sesChildToken = "EMBARGO_SES_TOKEN" // the subscription token, hex; empty for none
)

// TestSessionReceiverChild is TestSessionAttack's receiver, run by it as
// a child process; run directly, it skips.
func TestSessionReceiverChild(t *testing.T) {
	if os.Getenv(sesChild) == "" {
		t.Skip("a child process of TestSessionAttack, not a test of its own")
	}
	b, _ := json.Marshal(sesChildMain())
	fmt.Printf("S %s\n", b)
}

func sesChildMain() (res fgChildResult) {
	fail := func(err error) fgChildResult { res.Err = err.Error(); return res }
	peak := trackPeakRSS()
	pub, master, err := readChildKeys()
	if err != nil {
		return fail(err)
	}
	edge, err := netip.ParseAddrPort(os.Getenv(sesChildEdge))
	if err != nil {
		return fail(err)
	}
	var token []byte
	if v := os.Getenv(sesChildToken); v != "" {
		if _, err := fmt.Sscanf(v, "%x", &token); err != nil {
			return fail(err)
		}
	}
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(edge))
	if err != nil {
		return fail(err)
	}
	r, err := udp.NewReader(c)
	if err != nil {
		return fail(err)
	}
	tap := &tapConn{Reader: r, c: c}
	cfg := subscriber.Config{Edge: edge, Streams: []uint32{stream}, Retry: 50 * time.Millisecond}
	if token != nil {
		cfg.Token = func() []byte { return token }
	}
	client, err := subscriber.New(cfg, tap)
	if err != nil {
		return fail(err)
	}
	var out childOut
	rcv, err := out.receiver(pub, master, nil)
	if err != nil {
		return fail(err)
	}
	observe := func(cmd string) bool {
		if cmd != "observe" {
			return false
		}
		fmt.Printf("K %x\n", tap.observed())
		return true
	}
	if err := out.serve(rcv, []receiver.Source{client}, observe); err != nil {
		return fail(err)
	}
	res.Stats, res.Subscriber, res.PeakRSS = rcv.Stats(), client.Stats(), peak()
	return res
}

// observe asks a subscribing child for the last KEEPALIVE it sent (nil if
// none yet).
func (k *fgChildProc) observe() []byte {
	fmt.Fprintln(k.stdin, "observe")
	select {
	case d := <-k.observed:
		return d
	case <-k.done:
	case <-time.After(10 * time.Second):
	}
	return nil
}

// tapConn is a subscriber's UDP socket that keeps a copy of the last
// KEEPALIVE it sent: what an on-path observer sees.
type tapConn struct {
	*udp.Reader
	c    *net.UDPConn
	mu   sync.Mutex
	last []byte
}

func (c *tapConn) Write(b []byte) (int, error) {
	if h, err := wire.Peek(b); err == nil && h.Type == wire.TypeKeepalive {
		c.mu.Lock()
		c.last = append(c.last[:0], b...)
		c.mu.Unlock()
	}
	return c.c.Write(b)
}

func (c *tapConn) observed() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.last...)
}
