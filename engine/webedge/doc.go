// Package webedge is an edge's side of pushing releases to web browsers,
// which cannot receive a UDP datagram: a WebSocket endpoint (Server, an
// edge.Sender the edge also feeds its catch-up history) that sends every
// embargo datagram the edge sends — ANNOUNCE shards as the carousel sends
// them, each RELEASE copy at its releaseAt — as one binary message to every
// connected browser. The browser verifies and opens them with the device
// receiver compiled to WebAssembly (cmd/embargo-wasm, web/); like every
// sender, the edge holds no content key.
//
// The fan-out never waits for a browser: each connection has a bounded
// queue and its own writer, and a connection whose queue is full, that
// sends anything, or whose write stalls is counted and closed.
package webedge
