// Package web holds embargo's browser side: the TypeScript glue (src/,
// built to dist/ with `npm ci && npm run build`) that feeds an edge's
// WebSocket messages (engine/webedge) to the device receiver compiled to
// WebAssembly (cmd/embargo-wasm). The Go package is its test in a real
// browser: an edge, the page, and headless Chromium.
package web
