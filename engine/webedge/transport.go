package webedge

import (
	"context"
	"errors"

	"github.com/coder/websocket"
)

// errBadInput is what a browser may not send: closed and counted.
var errBadInput = errors.New("webedge: a browser sent what no page sends")

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
	// read waits for the browser's next message (a WebSocket message,
	// a WebTransport datagram); its error is errBadInput for anything
	// else the browser sends (a stream, an oversized message), or why
	// the connection ended.
	read(ctx context.Context) ([]byte, error)
	// reply sends m at once, beside the queue: a time echo, whose send
	// instant must not wait behind the fan-out.
	reply(ctx context.Context, m []byte) error
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

func (t wsTransport) read(ctx context.Context) ([]byte, error) {
	_, b, err := t.c.Read(ctx)
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return nil, errBadInput
	}
	return b, err
}

// reply: a websocket.Conn takes writes from several goroutines.
func (t wsTransport) reply(ctx context.Context, m []byte) error {
	return t.c.Write(ctx, websocket.MessageBinary, m)
}

func (t wsTransport) abort(string) { t.c.CloseNow() }

func (t wsTransport) end(code websocket.StatusCode, reason string) { t.c.Close(code, reason) }
