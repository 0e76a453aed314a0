package datagram

import "testing"

func TestKeep(t *testing.T) {
	ms := make([]Message, 5)
	for i := range ms {
		ms[i] = Message{Buf: make([]byte, 1), N: i}
	}
	bufs := map[*byte]bool{}
	for _, m := range ms {
		bufs[&m.Buf[0]] = true
	}
	n := Keep(ms, 4, func(m *Message) bool { return m.N%2 == 1 }) // the fifth is past n
	if n != 2 || ms[0].N != 1 || ms[1].N != 3 {
		t.Fatalf("kept %d: %+v", n, ms[:n])
	}
	for _, m := range ms {
		if !bufs[&m.Buf[0]] {
			t.Fatal("a buffer was lost")
		}
		delete(bufs, &m.Buf[0])
	}
}
