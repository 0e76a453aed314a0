// Package netnstest builds network labs (package netns) for tests: it skips
// a test that cannot have one, with the reason, and deletes the lab when the
// test ends. It is the only place lab code meets package testing, so that
// binaries linking netns (`embargo demo -netns`) do not link testing.
package netnstest
