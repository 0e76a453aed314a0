//go:build linux && race

package faults

// loadSubscribers is TestLoad's crowd under the race detector: the full
// 50,000 still fits. -race slows the handshake (2.5–9 s on the two-core
// VM, against under 1 s) but hardly the fan-out, which is the kernel's
// work; TestLoad takes 15–19 s. Scale it down here if a slower machine
// needs it.
const loadSubscribers = 50_000

// loadBuild names the build in TestLoad's RESULT line.
const loadBuild = "race build"
