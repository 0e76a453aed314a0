package wire

import (
	"bytes"
	"testing"
)

func TestTimeEcho(t *testing.T) {
	req := TimeRequest{Origin: -5}
	b := make([]byte, TimeRequestLen)
	if _, err := req.Encode(b); err != nil {
		t.Fatal(err)
	}
	var gotReq TimeRequest
	if err := gotReq.Decode(b); err != nil || gotReq != req || !IsTime(b) {
		t.Fatalf("request %+v, %v", gotReq, err)
	}
	echo := TimeEcho{Origin: -5, Received: 1 << 62, Sent: 1<<62 + 1}
	e := make([]byte, TimeEchoLen)
	if _, err := echo.Encode(e); err != nil {
		t.Fatal(err)
	}
	var gotEcho TimeEcho
	if err := gotEcho.Decode(e); err != nil || gotEcho != echo {
		t.Fatalf("echo %+v, %v", gotEcho, err)
	}
	// Neither decodes as the other, nor with a byte more, nor reserved
	// bytes set; no embargo datagram is one.
	bad := [][]byte{e[:TimeRequestLen+1], append(bytes.Clone(b), 0), func() []byte { c := bytes.Clone(b); c[5] = 1; return c }()}
	for _, x := range bad {
		if gotReq.Decode(x) != ErrTimeEcho {
			t.Errorf("request decoded from %x", x)
		}
	}
	if gotEcho.Decode(b) != ErrTimeEcho || gotReq.Decode(e) != ErrTimeEcho {
		t.Error("a request decodes as an echo or the other way round")
	}
	for _, s := range samples() {
		if IsTime(encodeAll(s.value)) {
			t.Errorf("%T taken for a time echo", s.value)
		}
	}
}

// fuzzTime seeds fuzzDecoder's check with the time echo messages too.
func fuzzTime(f *testing.F, fresh func() codec) {
	for _, m := range []codec{&TimeRequest{Origin: 1}, &TimeEcho{Origin: 1, Received: 2, Sent: 3}} {
		b := make([]byte, m.Len())
		m.Encode(b)
		f.Add(b)
	}
	fuzzDecoder(f, fresh)
}

func FuzzTimeRequest(f *testing.F) { fuzzTime(f, func() codec { return &TimeRequest{} }) }
func FuzzTimeEcho(f *testing.F)    { fuzzTime(f, func() codec { return &TimeEcho{} }) }
