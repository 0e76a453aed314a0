package depcheck

import "testing"

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		dep, forbidden string
		want           bool
	}{
		{Module + "/bpf", "./bpf", true},
		{Module + "/bpf/skew", "./bpf", true},
		{Module + "/bpfish", "./bpf", false},
		{Module + "/engine/receiver/skew", "./bpf", false},
		{"github.com/facebook/time/phc", "github.com/facebook/time", true},
		{"github.com/facebook/timeless", "github.com/facebook/time", false},
		{"golang.org/x/net/ipv4", "golang.org/x/net", true},
		{"golang.org/x/sys/unix", "golang.org/x/net", false},
		{"testing", "testing", true},
		{"testing/synctest", "testing", true},
		{Module + "/internal/netns/netnstest", "./internal/netns/netnstest", true},
	} {
		if got := Matches(c.dep, c.forbidden); got != c.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", c.dep, c.forbidden, got, c.want)
		}
	}
}
