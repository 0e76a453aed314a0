// Package clearkey speaks the W3C Encrypted Media Extensions Clear Key
// licence protocol (EME §9.1.3 License Request Format, §9.1.4 License
// Format) on both sides of embargo.
//
// On a device, a Proxy is the licence server an unmodified browser player
// talks to: it is fed released periods by the receiver (Deliver) and
// answers a player's licence request for a key id only once that id's
// period has been released, holding the request open until then. The
// player may therefore ask as early as it likes — the timed release, not
// the licence exchange, decides when it can decrypt — and a request can
// never be answered early, because the proxy holds no key before its
// release.
//
// At the origin, a MasterHandler hands a subscriber's receiver the event's
// 32-byte master key behind a bearer token. That licence reuses the JWK
// Set shape of a Clear Key licence for embargo's own purpose: it is read
// by embargo receivers (ParseMasterLicence), never by a player, and its
// key is not a CENC content key.
//
// The format functions (ParseRequest, MarshalRequest, MarshalLicence,
// ParseLicence) are strict about what they accept: base64url without
// padding, 16-byte key ids and keys, bounded sizes; unknown JSON members
// are tolerated, as the specification lets others add them.
package clearkey
