// Package keyserver is the origin service: it issues every event's key
// periods ahead of time into a durable keystore, and serves them over
// HTTPS — release bundles to edges and content keys to packagers as CPIX
// documents encrypted to the caller's client certificate, the master key
// to authorized receivers as a ClearKey-shaped licence, and a session
// description from which a receiver configures itself.
//
// Poller is the edge's side: it fetches bundles over mutual TLS, checks
// the CPIX document, and hands each bundle to the edge, which verifies the
// ANNOUNCE signature before it carousels anything.
package keyserver
