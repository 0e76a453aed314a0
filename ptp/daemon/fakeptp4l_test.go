package daemon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/facebook/time/ptp/protocol"

	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/ptp"
)

// fakePTP4LServer answers ptp4l's management messages on a unixgram socket
// with facebook/time's own encoders, as a synchronized slave would: the
// socket path, connection and redial code runs without root or linuxptp.
type fakePTP4LServer struct {
	conn *net.UnixConn
	path string
	done chan struct{}
	once sync.Once
}

func serveFakePTP4L(t *testing.T, path string) *fakePTP4LServer {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &fakePTP4LServer{conn: c, path: path, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

// stop closes the socket and removes its file, as a stopped ptp4l does.
func (s *fakePTP4LServer) stop() {
	s.once.Do(func() {
		s.conn.Close()
		<-s.done
		os.Remove(s.path)
	})
}

func (s *fakePTP4LServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUnix(buf)
		if err != nil {
			return // closed
		}
		var head protocol.ManagementMsgHead
		var tlv protocol.ManagementTLVHead
		r := bytes.NewReader(buf[:n])
		if binary.Read(r, binary.BigEndian, &head) != nil || binary.Read(r, binary.BigEndian, &tlv) != nil {
			continue
		}
		th := protocol.ManagementTLVHead{TLVHead: protocol.TLVHead{TLVType: protocol.TLVManagement}, ManagementID: tlv.ManagementID}
		var body protocol.ManagementTLV
		switch tlv.ManagementID {
		case protocol.IDTimeStatusNP:
			body = &protocol.TimeStatusNPTLV{ManagementTLVHead: th, MasterOffsetNS: -700, IngressTimeNS: time.Now().UnixNano(), GMPresent: 1}
		case protocol.IDPortPropertiesNP:
			body = &protocol.PortPropertiesNPTLV{ManagementTLVHead: th, PortState: protocol.PortStateSlave, Timestamping: protocol.TimestampingSoftware, Interface: "veth0"}
		case protocol.IDCurrentDataSet:
			body = &protocol.CurrentDataSetTLV{ManagementTLVHead: th, MeanPathDelay: protocol.NewTimeInterval(12_000)}
		case protocol.IDParentDataSet:
			body = &protocol.ParentDataSetTLV{ManagementTLVHead: th, GrandmasterClockQuality: protocol.ClockQuality{ClockAccuracy: protocol.ClockAccuracyMicrosecond25}}
		default:
			continue
		}
		head.ActionField = protocol.RESPONSE
		b, err := (&protocol.Management{ManagementMsgHead: head, TLV: body}).MarshalBinary()
		if err != nil {
			continue
		}
		s.conn.WriteToUnix(b, from)
	}
}

// TestPTP4LSocket runs the real socket path against a fake ptp4l: the
// source opens, reads the bound from the answers, notices when the daemon
// goes away, and redials when it is back. Waits are for events, bounded.
func TestPTP4LSocket(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where client sockets are bound
	path := filepath.Join(t.TempDir(), "ptp4l")
	srv := serveFakePTP4L(t, path)
	s, err := OpenPTP4L(path, PTP4LOptions{}, WithPoll(MinPoll), WithMaxAge(time.Hour), WithBase(ptp.NewSim()), withTAI(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 25 µs accuracy + 700 ns offset + 12 µs path delay.
	if st := s.Status(); st.State != ptp.StateSynchronized || st.Bound < 25*time.Microsecond+700+12*time.Microsecond {
		t.Fatalf("status %+v, want synchronized with a bound ≥ 37.7µs", st)
	}
	failing := func() bool { return strings.Contains(s.Status().Reason, "last question failed") }
	srv.stop()
	if !wait.Until(10*time.Second, failing) {
		t.Fatalf("daemon gone, but the source says %q", s.Status().Reason)
	}
	serveFakePTP4L(t, path)
	if !wait.Until(10*time.Second, func() bool { return !failing() }) {
		t.Fatalf("daemon back, but the source says %q", s.Status().Reason)
	}
	if err := s.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("client sockets left behind: %v", left)
	}
}
