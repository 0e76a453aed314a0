// Package receiver is the library device teams link to get each key
// period's content keys (or opaque resource) at its release instant.
//
// A Receiver rebuilds ANNOUNCEs from Reed–Solomon shards, trusts a body
// only with a configured origin's signature, and on a RELEASE checks the
// secret against the body's commitment, opens the payload and unwraps the
// content keys with the master key — then delivers one Event per period,
// stamped with the kernel's arrival time of the first valid RELEASE. No
// signature is checked at the release instant, only a hash.
//
// Datagrams may come from several edges and groups at once: duplicates are
// expected and cost little. Forged ones cost little too (PROTOCOL.md §9.1):
// a forged shard root is checked at most once however often it is resent,
// checks of unverified roots are budgeted, the goroutines reading sockets
// check no signature, and a forged RELEASE cannot push the genuine one out
// of the queue of RELEASEs that came before their body. Everything malformed, forged, replayed or
// unusable is dropped and counted by reason (Stats); nothing is delivered
// that did not open the origin's commitment.
package receiver
