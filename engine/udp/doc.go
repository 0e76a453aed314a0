// Package udp holds the UDP sockets the roles use: multicast senders and
// listeners (IPv4 and IPv6, any-source and source-specific) and a batched
// reader that stamps every datagram with its kernel arrival time.
//
// Sending is pinned: a Sender names its interface (loopback unless told
// otherwise) with IP_MULTICAST_IF / IPV6_MULTICAST_IF and a hop limit that
// is 0 on loopback and 1 elsewhere unless set, so a datagram never leaves
// through another interface by accident. Sends are batched (sendmmsg).
//
// Reading (a Listen group, or any UDP socket through NewReader) returns
// each datagram with the kernel's arrival stamp (SO_TIMESTAMPNS), in
// batches (recvmmsg); many sockets may join one group and port on a host
// and each gets every datagram.
//
// That is Linux (and Android). On every other OS Go supports, Listen and
// NewReader are the portable path (ListenPortable, NewPortableReader:
// the standard library and x/net, one datagram per read, arrivals stamped
// by the receiver), which the tests also run on Linux; sending is Linux
// only, as edges are.
package udp
