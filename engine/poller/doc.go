// Package poller is the edge's client of the origin: a Poller fetches each
// stream's release bundles over mutual TLS as CPIX documents encrypted to
// the edge's certificate, checks them, and hands each bundle to the edge,
// which verifies the ANNOUNCE signature before it carousels anything.
//
// An edge runs it; neither the origin nor a device links it.
package poller
