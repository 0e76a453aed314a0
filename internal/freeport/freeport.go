// Package freeport finds ports for tests whose programs must be told an
// address before they listen: a flag, another role's URL, a multicast
// group. A port picked from the clock lands in the kernel's ephemeral
// range, where any outgoing connection or other test may hold it, and
// the test then fails by chance; a port the kernel hands out as free
// does not.
package freeport

import (
	"net"
	"testing"
)

// Get returns n distinct ports on which TCP on 127.0.0.1 and UDP on every
// address are both free now. It holds each port while it looks for the
// next, so the n differ; it closes them all before it returns. Linux
// gives bind(0) ports of the other parity from those connect() prefers,
// so an outgoing connection is unlikely to take one before the caller
// binds it.
func Get(t testing.TB, n int) []int {
	t.Helper()
	var held []net.Listener
	var probes []net.PacketConn
	defer func() {
		for _, l := range held {
			l.Close()
		}
		for _, p := range probes {
			p.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			t.Fatalf("freeport: no %d free ports in %d tries: is the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range) exhausted?", n, tries)
		}
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("freeport: %v", err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		p, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
		if err != nil {
			continue // someone holds its UDP side; keep the TCP one so it is not offered again
		}
		probes = append(probes, p)
		ports = append(ports, port)
	}
	return ports
}

// One is Get(t, 1)[0].
func One(t testing.TB) int {
	t.Helper()
	return Get(t, 1)[0]
}
