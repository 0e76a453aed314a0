// Package edgetest is the in-memory double of the edge's sender seam
// (edge.Sender), for tests of anything that sends through an edge: it
// records every datagram with its type, stream, period and the true time
// of the send, can be made to fail, and can take a set time per ANNOUNCE
// or RELEASE batch — a virtual sleep inside a testing/synctest bubble,
// which is how a test models a slow unicast fan-out deterministically.
// Runner adds the optional edge.RunSender behaviour, ending on demand.
package edgetest
