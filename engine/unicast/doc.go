// Package unicast is an edge's side of pushing releases to receivers that
// have no multicast: address-validated sessions (Sessions) and a fan-out
// that sends each datagram to every subscriber with batched sendmmsg across
// sender threads (Server, an edge.Sender that the edge also runs and feeds
// its catch-up history). The device's side of a session is package
// engine/subscriber.
//
// The rule that shapes it (PROTOCOL.md §4): before an address has returned a
// cookie — proving it receives there — the edge answers it only with
// datagrams smaller than what it sent, so the edge cannot reflect or
// amplify traffic toward a spoofed source. And a session is the key agreed
// in its handshake, not its id: only a datagram under that key refreshes,
// ends or (after a challenge to the new address) moves a subscription.
// Admission — tokens, per-address and per-prefix limits, a subscribe rate,
// catch-up budgets — is spent only on addresses that proved themselves.
package unicast
