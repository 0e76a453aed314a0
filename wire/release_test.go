package wire

import (
	"errors"
	"testing"
)

func TestSetSentAt(t *testing.T) {
	r := Release{Header: Header{Stream: 3, Period: 9}, ReleaseAt: 100, SentAt: 100, EdgeID: 7}
	b := make([]byte, ReleaseLen)
	if _, err := r.Encode(b); err != nil {
		t.Fatal(err)
	}
	if err := SetSentAt(b, 12345); err != nil {
		t.Fatal(err)
	}
	var got Release
	if err := got.Decode(b); err != nil {
		t.Fatal(err)
	}
	want := r
	want.SentAt = 12345
	want.Version, want.Type, want.Length = Version, TypeRelease, uint16(ReleaseLen-HeaderLen)
	if got != want {
		t.Fatalf("after SetSentAt: %+v, want %+v", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = SetSentAt(b, 1) }); allocs != 0 {
		t.Errorf("SetSentAt allocates %v times", allocs)
	}

	for _, c := range []struct {
		name string
		b    []byte
		at   int64
		want error
	}{
		{"short", b[:ReleaseLen-1], 1, ErrInconsistent},
		{"negative", b, -1, ErrInconsistent},
		{"not a release", retyped(b, TypeAnnounce), 1, ErrWrongType},
	} {
		if err := SetSentAt(c.b, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// retyped is a copy of b with its header's type byte set to typ, so that
// only the type check can refuse it.
func retyped(b []byte, typ Type) []byte {
	c := append([]byte(nil), b...)
	c[5] = byte(typ)
	return c
}

func TestAddFlags(t *testing.T) {
	r := Release{Header: Header{Stream: 3, Period: 9}, ReleaseAt: 100, SentAt: 100}
	b := make([]byte, ReleaseLen)
	if _, err := r.Encode(b); err != nil {
		t.Fatal(err)
	}
	if err := AddFlags(b, FlagCatchUp); err != nil {
		t.Fatal(err)
	}
	var got Release
	if err := got.Decode(b); err != nil || got.Flags != FlagCatchUp || got.RK != r.RK || got.ReleaseAt != 100 {
		t.Fatalf("after AddFlags: %+v, %v", got, err)
	}
	if err := AddFlags(b, 0x8000); !errors.Is(err, ErrFlags) {
		t.Errorf("undefined flag: %v", err)
	}
	if err := AddFlags(b[:10], FlagCatchUp); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated: %v", err)
	}
}
