// Package bundle is what an origin hands an edge for one key period: the
// period's ANNOUNCE datagrams, already sharded and signed by the origin, and
// the release secret RK with the instant it may be released.
//
// An edge cannot sign, so it carries the origin's datagrams as they are; it
// checks a bundle on the way in (Open) so that it never carousels a body
// receivers would reject, nor releases an RK that does not open it.
package bundle
