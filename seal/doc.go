// Package seal is embargo's cryptographic construction (PROTOCOL.md §6):
// origin signing-key ids, the salted commitment to a period's release
// secret RK, sealing a period's payload under RK with AES-256-GCM, wrapping
// content keys under an event's master key, and the origin's Ed25519
// signatures over ANNOUNCE bodies and over shard Merkle roots.
//
// Everything here is built from the standard library (crypto/ed25519,
// crypto/hkdf, crypto/aes, crypto/cipher, crypto/sha256); the byte layouts
// come from package wire. An edge needs only RK and the body, never a
// content key; a receiver needs the origin's public key to trust a body, RK
// to open it, and the master key to unwrap what is inside.
package seal
