package fectest_test

import (
	"bytes"
	"testing"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/fec/fectest"
	"github.com/embargo-live/embargo/wire"
)

// A forged shard proves against its own root, which differs from the
// genuine one and from another nonce's; the same nonce forges the same.
func TestForge(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 300)
	g := fec.Geometry{K: 2, M: 3, ShardSize: 150, BodyLen: 300}
	set, err := fec.Encode(body, g)
	if err != nil {
		t.Fatal(err)
	}
	var s wire.Shard
	s.Stream, s.Period = 1, 2
	set.Fill(&s, 4)
	a, b, a2 := fectest.Forge(&s, 1), fectest.Forge(&s, 2), fectest.Forge(&s, 1)
	if root, ok := fec.ProofRoot(a); !ok || root != a.Root {
		t.Fatalf("forged shard does not prove against its own root")
	}
	if a.Root == s.Root || a.Root == b.Root || a.Root != a2.Root || a.Sig != a2.Sig {
		t.Fatal("roots: want new per nonce, same for the same nonce")
	}
	if !bytes.Equal(a.Data, s.Data) || a.Index != s.Index || a.KeyID != s.KeyID {
		t.Fatal("forge changed what it should keep")
	}
	if root, _ := fec.ProofRoot(&s); root != set.Root {
		t.Fatal("ProofRoot of a genuine shard is not its set's root")
	}
}
