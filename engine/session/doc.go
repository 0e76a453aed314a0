// Package session is the device's client of the origin: it reads the
// origin's session description (Session, served at /v1/session by package
// keyserver, which imports this type so the two cannot drift) and fetches
// a stream's master key with a bearer token (FetchMaster). An edge reads
// the description through it too, for the origin's key.
//
// It links no keystore, no CPIX and no certificate or RSA key handling of
// embargo's own: those are the origin's and the edge's poller's.
package session
