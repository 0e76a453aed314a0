// Package subscriber is a device's side of a unicast session with an edge
// (PROTOCOL.md §4), for receivers that have no multicast: a Client
// subscribes (HELLO → COOKIE → SUBSCRIBE, agreeing a session key), keeps
// the NAT binding alive with authenticated keepalives, answers the edge's
// challenge when its address changes, believes only answers to its own
// requests, starts over after an edge restart or silence, asks for
// catch-up, presents a subscription token when it has one, and is
// a datagram.Source that hands the receiver the edge's ANNOUNCE and
// RELEASE datagrams. The edge's side is engine/unicast; a device links only
// this package.
//
// The Client's transport is a Conn: a connected UDP socket in service
// (Dial), package subscribertest's in-memory pipe in virtual-time tests.
package subscriber
