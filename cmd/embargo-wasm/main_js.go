//go:build js && wasm

package main

import (
	"encoding/json"
	"syscall/js"
	"time"

	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/wire"
)

func main() {
	js.Global().Set("embargoReceiver", js.FuncOf(newReceiver))
	select {} // the page calls in; main must not return
}

// newReceiver is embargoReceiver(options JSON string, onPeriod(json)): it
// returns {feed, stats, timeRequest, clock} or throws an Error naming what
// is wrong. feed takes time echoes too (for clock), with the page's
// receive instant; timeRequest(sentMs) makes the request a page sends its
// edges; clock is the measured ClockOffset, JSON.
func newReceiver(_ js.Value, args []js.Value) any {
	if len(args) != 2 || args[0].Type() != js.TypeString || args[1].Type() != js.TypeFunction {
		return throw("embargoReceiver(options: string, onPeriod: function)")
	}
	onPeriod := args[1]
	cfg, err := parseOptions(args[0].String(), func(p Period) {
		b, _ := json.Marshal(p) // cannot fail: plain fields
		onPeriod.Invoke(string(b))
	})
	if err != nil {
		return throw(err.Error())
	}
	r, err := receiver.New(cfg)
	if err != nil {
		return throw(err.Error())
	}
	var clock pageClock
	feed := js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) < 1 || args[0].Type() != js.TypeObject {
			return throw("feed(datagram: Uint8Array, receivedMs?: number)")
		}
		b := make([]byte, args[0].Get("length").Int())
		js.CopyBytesToGo(b, args[0])
		if wire.IsTime(b) {
			clock.echo(b, pageInstant(args[1:]))
			return nil
		}
		// No kernel stamp in a page: the receiver stamps with Now.
		r.Handle(b, time.Time{}, noAddr)
		return nil
	})
	timeRequest := js.FuncOf(func(_ js.Value, args []js.Value) any {
		b := clock.request(pageInstant(args))
		a := js.Global().Get("Uint8Array").New(len(b))
		js.CopyBytesToJS(a, b)
		return a
	})
	offset := js.FuncOf(func(js.Value, []js.Value) any {
		b, _ := json.Marshal(clock.offset())
		return string(b)
	})
	stats := js.FuncOf(func(js.Value, []js.Value) any {
		b, _ := json.Marshal(r.Stats())
		return string(b)
	})
	return js.ValueOf(map[string]any{"feed": feed, "stats": stats, "timeRequest": timeRequest, "clock": offset})
}

// pageInstant is the page's instant in args[0], UTC milliseconds from
// its own clock (performance.timeOrigin + performance.now(), finer than
// the millisecond Go's time.Now has in a page), or time.Now without one.
func pageInstant(args []js.Value) time.Time {
	if len(args) == 0 || args[0].Type() != js.TypeNumber {
		return time.Now()
	}
	return time.Unix(0, int64(args[0].Float()*float64(time.Millisecond)))
}

// throw returns a JavaScript Error for the caller to see; Go cannot throw
// across syscall/js, so the glue checks for it.
func throw(msg string) any {
	return js.Global().Get("Error").New("embargo: " + msg)
}
