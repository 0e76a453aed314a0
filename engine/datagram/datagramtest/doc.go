// Package datagramtest is the in-memory test double of datagram.Source: a
// Pipe a test writes datagrams into, with or without arrival stamps, and a
// receiver reads as it would a socket. A blocked ReadBatch waits on
// channels only, so inside a testing/synctest bubble it is durably blocked
// and virtual time advances past it; create the Pipe inside the bubble that
// uses it.
package datagramtest
