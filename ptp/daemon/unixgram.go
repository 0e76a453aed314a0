package daemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// localSeq numbers this process's client sockets.
var localSeq atomic.Uint64

// unixgram is a datagram connection to a daemon's command socket, redialled
// after any failure. Daemons answer to the client's own socket path, so the
// client binds one (in the temporary directory, readable by a daemon that
// dropped privileges, removed on close) as chronyc and pmc do.
type unixgram struct {
	remote, prefix string
	timeout        time.Duration
	conn           *net.UnixConn
	local          string
}

// exchange dials if needed and runs f on the connection under a deadline;
// a failure closes the connection so that a late answer to this question
// cannot be read as the answer to the next.
func (u *unixgram) exchange(f func(c *net.UnixConn) error) error {
	if u.conn == nil {
		if err := u.dial(); err != nil {
			return err
		}
	}
	if err := u.conn.SetDeadline(time.Now().Add(u.timeout)); err != nil {
		u.Close()
		return err
	}
	if err := f(u.conn); err != nil {
		u.Close()
		return err
	}
	return nil
}

func (u *unixgram) dial() error {
	local := filepath.Join(os.TempDir(), fmt.Sprintf("embargo-%s.%d.%d.sock", u.prefix, os.Getpid(), localSeq.Add(1)))
	os.Remove(local)
	c, err := net.DialUnix("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"}, &net.UnixAddr{Name: u.remote, Net: "unixgram"})
	if err != nil {
		os.Remove(local) // bound before the connect failed
		return fmt.Errorf("dial %s: %w", u.remote, err)
	}
	// The daemon may run as its own user; it must be able to answer.
	if err := os.Chmod(local, 0o666); err != nil {
		c.Close()
		os.Remove(local)
		return fmt.Errorf("client socket %s: %w", local, err)
	}
	u.conn, u.local = c, local
	return nil
}

// Close closes the connection and removes the client socket.
func (u *unixgram) Close() error {
	if u.conn == nil {
		return nil
	}
	err := u.conn.Close()
	os.Remove(u.local)
	u.conn, u.local = nil, ""
	return err
}
