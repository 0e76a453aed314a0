package udp

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Control-message layout on 64-bit Linux: struct cmsghdr is a size_t
// length and two ints, data aligned to 8; SCM_TIMESTAMPNS carries a struct
// timespec of two 64-bit fields.
const (
	cmsgHdrLen     = 16
	cmsgAlign      = 8
	solSocket      = 1
	scmTimestampNS = 35
	timespecLen    = 16
)

// ParseStamp finds the SCM_TIMESTAMPNS control message in oob, as recvmsg
// returns it on a socket with SO_TIMESTAMPNS, and returns its time as UTC
// ns. It reports false, never panics, on anything else, including
// truncated or malformed control data, and on 32-bit platforms, whose
// layout differs (receivers then fall back to user-space time).
func ParseStamp(oob []byte) (int64, bool) {
	if strconv.IntSize != 64 {
		return 0, false
	}
	for len(oob) >= cmsgHdrLen {
		l := binary.NativeEndian.Uint64(oob[0:8])
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if l < cmsgHdrLen || l > uint64(len(oob)) {
			return 0, false
		}
		if level == solSocket && typ == scmTimestampNS && l >= cmsgHdrLen+timespecLen {
			sec := int64(binary.NativeEndian.Uint64(oob[16:24]))
			nsec := int64(binary.NativeEndian.Uint64(oob[24:32]))
			if sec < 0 || nsec < 0 || nsec >= 1e9 || sec >= math.MaxInt64/1_000_000_000-1 {
				return 0, false
			}
			return sec*1e9 + nsec, true
		}
		step := (l + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if step > uint64(len(oob)) {
			return 0, false
		}
		oob = oob[step:]
	}
	return 0, false
}
