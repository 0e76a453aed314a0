package webedge

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/embargo-live/embargo/wire"
)

// A WebTransport session's one unidirectional stream carries every
// datagram but the live RELEASEs as frames: a 2-byte big-endian length
// (1 to wire.MaxDatagram) and that many bytes of the datagram.
const frameHeader = 2

// ErrFrame is returned by ReadFrames for a frame no edge sends.
var ErrFrame = errors.New("webedge: bad frame on the session stream")

// appendFrame appends m as one frame to b.
func appendFrame(b, m []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
	return append(b, m...)
}

// ReadFrames reads a session stream's frames until it ends, calling f
// with each datagram (f may keep it). It returns nil at the stream's end
// on a frame boundary, and an error wrapping ErrFrame for a zero or
// oversized length or a stream cut inside a frame — what a page drops.
func ReadFrames(r io.Reader, f func([]byte)) error {
	br := bufio.NewReader(r)
	var h [frameHeader]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("%w: %w", ErrFrame, err)
		}
		n := int(binary.BigEndian.Uint16(h[:]))
		if n == 0 || n > wire.MaxDatagram {
			return fmt.Errorf("%w: length %d, want 1 to %d", ErrFrame, n, wire.MaxDatagram)
		}
		m := make([]byte, n)
		if _, err := io.ReadFull(br, m); err != nil {
			return fmt.Errorf("%w: %w", ErrFrame, err)
		}
		f(m)
	}
}
