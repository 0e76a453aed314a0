package udp

import (
	"encoding/binary"
	"testing"
)

// cmsg builds one control message as the kernel lays it out on 64-bit Linux.
func cmsg(level, typ int32, data []byte) []byte {
	l := cmsgHdrLen + len(data)
	b := make([]byte, (l+cmsgAlign-1)&^(cmsgAlign-1))
	binary.NativeEndian.PutUint64(b[0:], uint64(l))
	binary.NativeEndian.PutUint32(b[8:], uint32(level))
	binary.NativeEndian.PutUint32(b[12:], uint32(typ))
	copy(b[16:], data)
	return b
}

func timespec(sec, nsec int64) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint64(b[0:], uint64(sec))
	binary.NativeEndian.PutUint64(b[8:], uint64(nsec))
	return b
}

func TestParseStamp(t *testing.T) {
	good := cmsg(solSocket, scmTimestampNS, timespec(1_800_000_000, 123))
	other := cmsg(0, 8, []byte{1, 2, 3, 4}) // IP_PKTINFO-like, unaligned length
	for _, c := range []struct {
		name string
		oob  []byte
		want int64
		ok   bool
	}{
		{"stamp", good, 1_800_000_000_000_000_123, true},
		{"after another message", append(append([]byte{}, other...), good...), 1_800_000_000_000_000_123, true},
		{"empty", nil, 0, false},
		{"other only", other, 0, false},
		{"truncated header", good[:10], 0, false},
		{"truncated data", good[:24], 0, false},
		{"length past end", func() []byte { b := append([]byte{}, good...); binary.NativeEndian.PutUint64(b, 1000); return b }(), 0, false},
		{"length below header", func() []byte { b := append([]byte{}, good...); binary.NativeEndian.PutUint64(b, 3); return b }(), 0, false},
		{"nsec out of range", cmsg(solSocket, scmTimestampNS, timespec(1, 1e9)), 0, false},
		{"negative", cmsg(solSocket, scmTimestampNS, timespec(-1, 0)), 0, false},
		{"overflow", cmsg(solSocket, scmTimestampNS, timespec(1<<62, 0)), 0, false},
	} {
		got, ok := ParseStamp(c.oob)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %d, %v; want %d, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseStamp: any control data either yields a plausible stamp or is
// refused; never a panic.
func FuzzParseStamp(f *testing.F) {
	f.Add(cmsg(solSocket, scmTimestampNS, timespec(1_800_000_000, 5)))
	f.Add(append(cmsg(0, 8, []byte{1, 2, 3}), cmsg(solSocket, scmTimestampNS, timespec(7, 9))...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		ns, ok := ParseStamp(oob)
		if ok && ns < 0 {
			t.Fatalf("negative stamp %d accepted", ns)
		}
		if !ok && ns != 0 {
			t.Fatalf("refused with %d", ns)
		}
	})
}
