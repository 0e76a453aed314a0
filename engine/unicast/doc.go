// Package unicast pushes releases to receivers that have no multicast:
// address-validated sessions on the edge (Sessions), a fan-out that sends
// each datagram to every subscriber with batched sendmmsg across sender
// threads (Server), and the receiver's side of a session (Client), which
// subscribes, keeps the NAT binding alive and re-subscribes after an edge
// restart or silence. The Client's transport is a Conn, a UDP socket in
// service and package unicasttest's in-memory pipe in virtual-time tests.
//
// The rule that shapes it (PROTOCOL.md §4): before an address has returned a
// cookie — proving it receives there — the edge answers it only with
// datagrams smaller than what it sent, so the edge cannot reflect or
// amplify traffic toward a spoofed source.
package unicast
