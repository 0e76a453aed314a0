// Package wait is the tests' polling helper: wait for a condition that a
// background goroutine will make true, up to a deadline, failing the test
// with what it waited for.
package wait

import (
	"testing"
	"time"
)

// poll is the pause between looks at the condition.
const poll = 2 * time.Millisecond

// For polls cond until it is true, or fails t after d saying what it
// waited for.
func For(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Until polls cond until it is true or d has passed, and reports whether
// it came true: for a test that judges what happened by the deadline
// rather than failing at it.
func Until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(poll)
	}
	return true
}
