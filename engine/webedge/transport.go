package webedge

import (
	"context"
	"errors"

	"github.com/coder/websocket"
)

// transport is one browser's connection, WebSocket or WebTransport.
type transport interface {
	// write sends datagrams in order; it returns when the connection
	// has taken them, or with ctx's error.
	write(ctx context.Context, msgs [][]byte) error
	// datagrams reports whether live RELEASEs go through datagram
	// rather than write.
	datagrams() bool
	// datagram sends one live RELEASE out of order and unreliably; it
	// may block while the connection's own queue is full.
	datagram(m []byte) error
	// read waits until the browser sends something (then it reports
	// true: bad input) or the connection ends (false).
	read(ctx context.Context) bool
	// abort drops the connection at once, aborting a write in progress.
	abort(reason string)
	// end closes the connection politely; it may wait for the browser.
	end(code websocket.StatusCode, reason string)
}

// wsTransport: each datagram one binary message.
type wsTransport struct{ c *websocket.Conn }

func (t wsTransport) write(ctx context.Context, msgs [][]byte) error {
	for _, m := range msgs {
		if err := t.c.Write(ctx, websocket.MessageBinary, m); err != nil {
			return err
		}
	}
	return nil
}

func (wsTransport) datagrams() bool { return false }

func (wsTransport) datagram([]byte) error { return errors.ErrUnsupported }

func (t wsTransport) read(ctx context.Context) bool {
	_, _, err := t.c.Read(ctx)
	return err == nil || errors.Is(err, websocket.ErrMessageTooBig)
}

func (t wsTransport) abort(string) { t.c.CloseNow() }

func (t wsTransport) end(code websocket.StatusCode, reason string) { t.c.Close(code, reason) }
