// Package rig runs the roles together over real sockets — an origin
// issuing a schedule of periods, edges carouselling and releasing them to a
// multicast group, and many receivers — and reports what every receiver
// saw: which periods it got, the kernel arrival time of each release
// against its releaseAt, and the skew across receivers.
//
// The end-to-end tests and the benchmarks share it; where the sockets live
// (loopback, or hosts in network namespaces) is the caller's choice.
package rig
