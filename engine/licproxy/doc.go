// Package licproxy is the device's licence proxy: a W3C Clear Key licence
// server (EME §9.1.3, §9.1.4) that an unmodified browser player on the
// device talks to. It is fed released periods by the receiver (Deliver)
// and answers a player's licence request for a key id only once that id's
// period has been released, holding the request open until then. The
// player may therefore ask as early as it likes — the timed release, not
// the licence exchange, decides when it can decrypt — and a request can
// never be answered early, because the proxy holds no key before its
// release.
//
// A device runs it; the origin never links it.
package licproxy
