package netnstest

import (
	"errors"
	"testing"

	"github.com/embargo-live/embargo/internal/netns"
)

// New builds a lab of n hosts (1 ≤ n ≤ 200). It calls t.Skip with the
// reason when namespaces cannot be built here (not root, no `ip`, not
// permitted, not Linux), t.Fatal on any other failure (a size out of range
// included), logs every abandoned lab it swept, and registers cleanup that
// deletes every namespace of the lab even if the test fails or panics.
func New(t testing.TB, n int) *netns.Lab {
	t.Helper()
	l, err := netns.Build(n, func(msg string) { t.Log(msg) })
	switch {
	case errors.Is(err, netns.ErrUnavailable) || errors.Is(err, netns.ErrNotSupported):
		t.Skip(err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}
