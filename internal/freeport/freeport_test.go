package freeport

import (
	"fmt"
	"net"
	"testing"
)

// TestGetBindable: every port Get returns is distinct and can be bound
// for TCP on loopback and UDP on the wildcard address after it returns.
func TestGetBindable(t *testing.T) {
	ports := Get(t, 8)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d returned twice in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("TCP port %d from Get: %v", p, err)
		}
		u, err := net.ListenUDP("udp", &net.UDPAddr{Port: p})
		if err != nil {
			l.Close()
			t.Fatalf("UDP port %d from Get: %v", p, err)
		}
		l.Close()
		u.Close()
	}
}
