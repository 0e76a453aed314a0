// Package wire is embargo's datagram codec: the byte layout of every message
// in PROTOCOL.md, and of the ANNOUNCE body and content-keys payload that the
// shards rebuild to.
//
// Every message starts with the same 24-byte header, followed by a payload
// at fixed big-endian offsets. Encoders write into a caller's buffer and
// report how many bytes they wrote; decoders check the length first, then
// read fixed offsets, and fill a caller's value whose byte-slice fields alias
// the input (valid until that buffer is reused). Nothing here allocates,
// performs I/O, logs, or does cryptography: the construction that gives the
// bytes their meaning lives in package seal, the sharding in package fec.
//
// Every way a datagram can be wrong has an exported sentinel error, so a
// caller can count drops by reason with errors.Is.
package wire
