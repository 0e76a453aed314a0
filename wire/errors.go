package wire

import "errors"

// Sentinel errors, one per way input can be wrong. Decoders return them
// unwrapped so that a caller counting drops can switch on them cheaply;
// errors.Is works too.
var (
	// ErrTruncated: shorter than its header or its fixed-size fields.
	ErrTruncated = errors.New("wire: truncated")
	// ErrOversized: longer than MaxDatagram (or a body longer than MaxBody).
	ErrOversized = errors.New("wire: oversized")
	// ErrMagic: the first four bytes are not "EMBG".
	ErrMagic = errors.New("wire: bad magic")
	// ErrVersion: a protocol version this implementation does not speak.
	ErrVersion = errors.New("wire: unsupported version")
	// ErrUnknownType: a message type this version does not define.
	ErrUnknownType = errors.New("wire: unknown message type")
	// ErrWrongType: a valid message of another type than the decoder's.
	ErrWrongType = errors.New("wire: wrong message type")
	// ErrFlags: a critical flag (high byte) this version does not define.
	ErrFlags = errors.New("wire: unknown critical flag")
	// ErrLength: the header's length disagrees with the datagram's, or a
	// fixed-size payload has the wrong size.
	ErrLength = errors.New("wire: inconsistent length")
	// ErrReserved: a reserved field or padding byte is not zero.
	ErrReserved = errors.New("wire: reserved field not zero")
	// ErrInconsistent: fields that are each well-formed contradict each
	// other or are out of range (FEC geometry, counts, times).
	ErrInconsistent = errors.New("wire: inconsistent fields")
	// ErrShortBuffer: the encoder's destination is too small.
	ErrShortBuffer = errors.New("wire: destination buffer too small")
)
