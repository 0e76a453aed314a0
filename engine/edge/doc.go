// Package edge is the release engine an edge server runs: it holds the
// origin's bundles, carousels each period's ANNOUNCE datagrams in rounds
// from a lead time before releaseAt, and at releaseAt sends the RELEASE to
// every destination — waiting on its clock's earliest possible time, so
// never early, and holding (loudly) while the clock is unsynchronized.
// Released periods are kept for late joiners' catch-up.
//
// The edge does no socket work itself: destinations are Senders (package
// udp provides multicast ones), so the scheduler is testable with a
// simulated clock and an in-memory sender (package edgetest) in virtual
// time (testing/synctest, waiting with ptp.Sleeper).
package edge
