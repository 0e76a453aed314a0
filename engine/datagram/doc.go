// Package datagram is the seam between a receiver and its transports: the
// Message a transport fills and the Source interface a receiver reads. It
// has no dependencies, so that the device library (engine/receiver) links
// neither the Linux sockets of engine/udp nor the eBPF code of bpf, and any
// transport — a multicast socket, a unicast session, a test's in-memory
// pipe (datagramtest) — can feed a receiver.
package datagram
