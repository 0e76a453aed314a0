// Package keyserver is the origin service: it issues every event's key
// periods ahead of time into a durable keystore, and serves them over
// HTTPS — release bundles to edges and content keys to packagers as CPIX
// documents encrypted to the caller's client certificate, the master key
// to authorized receivers as a ClearKey-shaped licence, and the session
// description (session.Session) from which a receiver configures itself.
//
// The origin runs it. Its clients live elsewhere: the edge's bundle
// poller in package poller, the device's session and licence client in
// package session. It links no device receiver and no licence proxy.
package keyserver
