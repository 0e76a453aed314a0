package unicast

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/embargo-live/embargo/ptp"
)

// TestReceiveBuffer: every server socket asks for recvBuffer, and gets it
// when privileged, else as much as net.core.rmem_max allows (the kernel
// reports twice what was granted).
func TestReceiveBuffer(t *testing.T) {
	srv, err := NewServer(ServerConfig{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Senders: 2, Clock: ptp.NewSim(),
		Sessions: SessionConfig{Streams: []uint32{1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	want := recvBuffer
	if unix.Geteuid() != 0 {
		b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
		if err != nil {
			t.Skip(err)
		}
		rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		want = min(want, rmemMax)
	}
	for i, sk := range srv.socks {
		var got int
		var gerr error
		if err := sk.rc.Control(func(fd uintptr) {
			got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		if got < 2*want {
			t.Errorf("socket %d: receive buffer %d, want at least 2×%d", i, got, want)
		}
	}
}
