// Package session is the device's client of the origin: it reads the
// origin's session description (Session, served at /v1/session by package
// keyserver, which imports this type so the two cannot drift) and fetches
// a stream's master key with a bearer token (FetchMaster).
//
// A device runs it. It links no keystore, no CPIX and no RSA key
// handling: those are the origin's and the edge's.
package session
