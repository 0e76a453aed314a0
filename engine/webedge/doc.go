// Package webedge is an edge's side of pushing releases to web browsers,
// which cannot receive a UDP datagram. Server is an edge.Sender (fed the
// edge's catch-up history too) that sends every embargo datagram the edge
// sends — ANNOUNCE shards as the carousel sends them, the RELEASE at its
// releaseAt — to every connected browser: over WebSocket (Handler) as
// one binary message each, and over WebTransport (ServeWebTransport) with
// a live RELEASE's first copy as a QUIC datagram and every other datagram
// as a frame on the session's one stream (ReadFrames). Sessions are
// reliable: of the edge's copies of a RELEASE a browser gets the first
// (and over WebTransport the second, on the stream), not the rest. A browser may ask the edge's time
// (wire.TimeRequest), answered at once beside the queue. The
// browser verifies and opens them with the device receiver compiled to
// WebAssembly (cmd/embargo-wasm, web/); like every sender, the edge holds
// no content key.
//
// The fan-out never waits for a browser: each session has bounded
// queues and its own writers, and a session whose queue is full, that
// sends anything but time requests, or whose write stalls is counted and
// closed. Admission is decided before the upgrade: a subscription token in
// the URL where Config.Tokens requires one, then Config.Admit.
package webedge
