package webedge

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"

	"github.com/embargo-live/embargo/wire"
)

func TestReadFrames(t *testing.T) {
	msgs := [][]byte{[]byte("a"), bytes.Repeat([]byte{7}, wire.MaxDatagram), []byte("three")}
	var b []byte
	for _, m := range msgs {
		b = appendFrame(b, m)
	}
	var got [][]byte
	// One byte at a time: frames cross every read boundary.
	if err := ReadFrames(iotest.OneByteReader(bytes.NewReader(b)), func(m []byte) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d frames, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Errorf("frame %d: %d bytes, want %d", i, len(got[i]), len(msgs[i]))
		}
	}
	for name, bad := range map[string][]byte{
		"zero length": {0, 0},
		"oversized":   {0xff, 0xff},
		"cut header":  {0},
		"cut body":    {0, 5, 'a', 'b'},
	} {
		n := 0
		err := ReadFrames(bytes.NewReader(append(appendFrame(nil, []byte("ok")), bad...)), func([]byte) { n++ })
		if !errors.Is(err, ErrFrame) || n != 1 {
			t.Errorf("%s: %v after %d frames, want ErrFrame after 1", name, err, n)
		}
	}
}

// FuzzReadFrames: any stream gives whole frames within bounds, then nil
// or ErrFrame — never a panic.
func FuzzReadFrames(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, []byte("shard")), []byte("x")))
	f.Add([]byte{0, 0})
	f.Add([]byte{0x23, 0x29, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		err := ReadFrames(bytes.NewReader(b), func(m []byte) {
			if len(m) == 0 || len(m) > wire.MaxDatagram {
				t.Fatalf("frame of %d bytes", len(m))
			}
			total += frameHeader + len(m)
		})
		if err != nil && !errors.Is(err, ErrFrame) {
			t.Fatalf("error %v does not wrap ErrFrame", err)
		}
		if err == nil && total != len(b) {
			t.Fatalf("nil error after %d of %d bytes", total, len(b))
		}
	})
}
