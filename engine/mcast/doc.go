// Package mcast opens the multicast sockets edges send from and receivers
// read from, IPv4 and IPv6, any-source and source-specific.
//
// Sending is pinned: a Sender names its interface (loopback unless told
// otherwise) with IP_MULTICAST_IF / IPV6_MULTICAST_IF and a hop limit that
// is 0 on loopback and 1 elsewhere unless set, so a datagram never leaves
// through another interface by accident. Sends are batched (sendmmsg).
//
// Receiving returns each datagram with the kernel's arrival stamp
// (SO_TIMESTAMPNS), read in batches (recvmmsg); many sockets may join one
// group and port on a host and each gets every datagram.
package mcast
