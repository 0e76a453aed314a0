package datagram

import (
	"net/netip"
	"time"
)

// Message is one received datagram. A Source fills the fields; the caller
// owns Buf and reuses it across reads.
type Message struct {
	// Buf is caller-provided; the datagram is Buf[:N].
	Buf []byte
	N   int
	// Arrival is when the datagram arrived, as the kernel stamped it, on
	// the host's UTC clock; the zero Time if the source gave no stamp (the
	// receiver then uses its own clock). Instants on TAI are int64
	// nanoseconds everywhere in embargo; UTC is always a time.Time.
	Arrival time.Time
	From    netip.AddrPort
	// Truncated: the datagram was larger than Buf and was cut.
	Truncated bool
}

// Source is where a receiver reads datagrams, such as a multicast socket
// or a unicast subscription.
type Source interface {
	// ReadBatch blocks until at least one datagram is available, then
	// fills up to len(ms) messages (each with its Buf set by the caller)
	// and returns how many. It is not called concurrently on one Source.
	// After Close it must return an error (wrapping net.ErrClosed where it
	// has one).
	ReadBatch(ms []Message) (int, error)
	// Close makes a blocked ReadBatch return.
	Close() error
}

// Keep moves the first n messages for which keep reports true to the
// front of ms, in order, and returns how many there are. Messages are
// swapped, not overwritten, so every buffer stays with ms for reuse.
func Keep(ms []Message, n int, keep func(*Message) bool) int {
	kept := 0
	for i := range n {
		if !keep(&ms[i]) {
			continue
		}
		ms[kept], ms[i] = ms[i], ms[kept]
		kept++
	}
	return kept
}
