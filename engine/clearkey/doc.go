// Package clearkey speaks the W3C Encrypted Media Extensions Clear Key
// licence protocol (EME §9.1.3 License Request Format, §9.1.4 License
// Format), shared by every role of embargo: the formats, the outcomes a
// licence request ends in (Outcome, Counters) and the JSON error answers.
// It depends on no role: no receiver, keystore or CPIX.
//
// At the origin, a MasterHandler hands a subscriber's receiver the event's
// 32-byte master key behind a bearer token. That licence reuses the JWK
// Set shape of a Clear Key licence for embargo's own purpose: it is read
// by embargo receivers (ParseMasterLicence), never by a player, and its
// key is not a CENC content key. A device's licence proxy for players is
// package licproxy.
//
// The format functions (ParseRequest, MarshalRequest, MarshalLicence,
// ParseLicence) are strict about what they accept: base64url without
// padding, 16-byte key ids and keys, bounded sizes; unknown JSON members
// are tolerated, as the specification lets others add them.
package clearkey
