package webedge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"

	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/wire"
)

// fanOutSessions is how many browsers of each transport TestFanOutFigures
// holds at once: in-process clients on a 2-core VM.
const fanOutSessions = 1000

// TestFanOutFigures sends RELEASEs to fanOutSessions WebSocket browsers,
// then to as many WebTransport sessions, from one Server, and prints the
// time from Send to the last browser's arrival (RESULT lines, medians of
// rounds). Every browser must get every round's RELEASE over WebSocket; a
// WebTransport datagram may be lost, as on UDP, and the line says how many
// arrived.
func TestFanOutFigures(t *testing.T) {
	realtime.Exclusive(t)
	const rounds = 5
	for _, kind := range []string{"websocket", "webtransport"} {
		// Every browser comes from 127.0.0.1: one address may hold them all.
		s, wsURL := start(t, Config{MaxConns: 2 * fanOutSessions, MaxPerAddress: 2 * fanOutSessions})
		var wtURL string
		var tr *webtransport.Transport
		if kind == "webtransport" {
			wtURL, tr = startWT(t, s)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		arrivals := make(chan int64, fanOutSessions*rounds)
		var wg sync.WaitGroup
		for range fanOutSessions {
			switch kind {
			case "websocket":
				c, _, err := websocket.Dial(ctx, wsURL, nil)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					defer c.CloseNow()
					for {
						_, b, err := c.Read(ctx)
						if err != nil {
							return
						}
						arrivals <- sentAt(b)
					}
				})
			default:
				_, sess, err := tr.Dial(ctx, wtURL, nil)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					defer sess.CloseWithError(0, "")
					for {
						b, err := sess.ReceiveDatagram(ctx)
						if err != nil {
							return
						}
						arrivals <- sentAt(b)
					}
				})
			}
		}
		waitConns(t, s, fanOutSessions)
		var lasts []time.Duration
		got := 0
		for r := range rounds {
			rel := release(t, uint64(r))
			t0 := time.Now()
			wire.SetSentAt(rel, t0.UnixNano())
			s.Send(wire.TypeRelease, [][]byte{rel})
			var last time.Duration
			n := 0
		wait:
			for n < fanOutSessions {
				select {
				case at := <-arrivals:
					if at == t0.UnixNano() {
						n++
						last = time.Since(t0)
					}
				case <-time.After(time.Second):
					break wait // the rest were lost
				}
			}
			got += n
			lasts = append(lasts, last)
		}
		cancel()
		wg.Wait()
		if kind == "websocket" && got != rounds*fanOutSessions {
			t.Errorf("websocket: %d of %d RELEASEs arrived", got, rounds*fanOutSessions)
		}
		slices.Sort(lasts)
		st := s.Stats()
		fmt.Printf("RESULT webedge-fanout transport=%s sessions=%d rounds=%d to-last-median=%v to-last-max=%v arrived=%d/%d slow=%d\n",
			kind, fanOutSessions, rounds, lasts[len(lasts)/2].Round(time.Microsecond), lasts[len(lasts)-1].Round(time.Microsecond), got, rounds*fanOutSessions, st.Slow)
		s.CloseAll()
	}
}

// sentAt is a RELEASE's sentAt, or 0 for anything else.
func sentAt(b []byte) int64 {
	var r wire.Release
	if r.Decode(b) != nil {
		return 0
	}
	return r.SentAt
}
