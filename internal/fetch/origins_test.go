package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/internal/memhttp"
)

// replicas serves each host by its own behaviour: "down" (no
// connection), "hang" (no answer until the request's deadline), or an
// HTTP status; it counts requests per host.
type replicas struct {
	mu    sync.Mutex
	state map[string]string
	calls map[string]int
}

func (r *replicas) set(host, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state[host] = state
}

func (r *replicas) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	state := r.state[req.URL.Host]
	r.calls[req.URL.Host]++
	r.mu.Unlock()
	switch state {
	case "down":
		return nil, errors.New("dial tcp: connection refused")
	case "hang":
		<-req.Context().Done()
		return nil, req.Context().Err()
	}
	return (&memhttp.Transport{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		switch state {
		case "ok":
			w.Write([]byte(req.URL.Host))
		case "404":
			http.Error(w, "no such stream", http.StatusNotFound)
		default:
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		}
	})}).RoundTrip(req)
}

func newReplicas(states ...string) (*replicas, *fetch.Origins, *http.Client) {
	r := &replicas{state: map[string]string{}, calls: map[string]int{}}
	var bases []string
	for i, s := range states {
		host := string(rune('a'+i)) + ".test"
		r.state[host] = s
		bases = append(bases, "https://"+host)
	}
	return r, fetch.NewOrigins(bases...), &http.Client{Transport: r, Timeout: 2 * time.Second}
}

// TestOriginsFailOver: a replica with no connection, a 5xx or no answer
// in time is left for the next, which is then used until it fails; a 4xx
// is an answer, not a failure; each move is counted, and Status names the
// replica in use and why the last move happened.
func TestOriginsFailOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, o, c := newReplicas("down", "503", "ok")
		body, _, err := o.Do(t.Context(), c, http.MethodGet, "/v1/session", "", 100)
		if err != nil || string(body) != "c.test" {
			t.Fatalf("Do = %q, %v; want c.test's answer", body, err)
		}
		if o.Current() != "https://c.test" || o.Failovers() != 2 {
			t.Fatalf("using %s after %d failovers, want c.test after 2", o.Current(), o.Failovers())
		}
		if ok, why := o.Status(); !ok || !strings.Contains(why, "using https://c.test of 3 replicas") || !strings.Contains(why, "b.test failed") || !strings.Contains(why, "503") {
			t.Errorf("Status = %v, %q", ok, why)
		}
		// The replica in use is asked first; the failed ones are not
		// retried while it answers.
		o.Do(t.Context(), c, http.MethodGet, "/", "", 100)
		if r.calls["a.test"] != 1 || r.calls["c.test"] != 2 {
			t.Errorf("calls %v: want a.test once, c.test twice", r.calls)
		}
		// A refusal of the request is returned, not failed over.
		r.set("c.test", "404")
		if _, _, err := o.Do(t.Context(), c, http.MethodGet, "/", "", 100); !strings.Contains(fmt.Sprint(err), "404") || o.Current() != "https://c.test" {
			t.Errorf("a 404: %v, using %s; want the 404 from c.test", err, o.Current())
		}
		// A replica that does not answer in time is left too.
		r.set("c.test", "hang")
		r.set("a.test", "ok")
		start := time.Now()
		body, _, err = o.Do(t.Context(), c, http.MethodGet, "/", "", 100)
		if err != nil || string(body) != "a.test" || time.Since(start) != 2*time.Second {
			t.Errorf("after c.test hangs: %q, %v after %v; want a.test's answer after the 2s timeout", body, err, time.Since(start))
		}
	})
}

// TestOriginsAllDown: when every replica fails, the error names each, and
// Status is not ok until one answers again.
func TestOriginsAllDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, o, c := newReplicas("down", "503")
		_, _, err := o.Do(t.Context(), c, http.MethodGet, "/x", "", 100)
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "503") {
			t.Fatalf("all down: %v", err)
		}
		if ok, why := o.Status(); ok || !strings.Contains(why, "every replica failed") {
			t.Errorf("Status = %v, %q", ok, why)
		}
		r.set("b.test", "ok")
		if _, err := o.Post(t.Context(), c, "/x", "text/plain", []byte("hi"), 100); err != nil {
			t.Fatal(err)
		}
		if ok, _ := o.Status(); !ok {
			t.Error("Status still failing after an answer")
		}
	})
}

// TestOriginsCanceled: a request the caller cancels is not a replica's
// failure: no failover.
func TestOriginsCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, o, c := newReplicas("hang", "ok")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, _, err := o.Do(ctx, c, http.MethodGet, "/", "", 100); err == nil {
			t.Fatal("no error from a canceled request")
		}
		if o.Failovers() != 0 || o.Current() != "https://a.test" {
			t.Errorf("%d failovers, using %s, after the caller's cancel", o.Failovers(), o.Current())
		}
	})
}

// TestOriginsTimeout: with SetTimeout, a hung replica is left after that
// bound, within the client's longer Timeout, for both Do and Post; 0
// leaves the client's Timeout alone.
func TestOriginsTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, o, c := newReplicas("hang", "ok") // the client's Timeout is 2 s
		o.SetTimeout(250 * time.Millisecond)
		if o.Timeout() != 250*time.Millisecond {
			t.Fatalf("Timeout = %v", o.Timeout())
		}
		start := time.Now()
		body, _, err := o.Do(t.Context(), c, http.MethodGet, "/", "", 100)
		if err != nil || string(body) != "b.test" || time.Since(start) != 250*time.Millisecond {
			t.Fatalf("a.test hangs: %q, %v after %v; want b.test's answer after 250ms", body, err, time.Since(start))
		}
		r.set("b.test", "hang")
		r.set("a.test", "ok")
		start = time.Now()
		if body, err := o.Post(t.Context(), c, "/", "text/plain", []byte("x"), 100); err != nil || string(body) != "a.test" || time.Since(start) != 250*time.Millisecond {
			t.Fatalf("b.test hangs, Post: %q, %v after %v; want a.test's answer after 250ms", body, err, time.Since(start))
		}
		o.SetTimeout(0)
		r.set("a.test", "hang")
		r.set("b.test", "ok")
		start = time.Now()
		if body, _, err := o.Do(t.Context(), c, http.MethodGet, "/", "", 100); err != nil || string(body) != "b.test" || time.Since(start) != 2*time.Second {
			t.Fatalf("no bound: %q, %v after %v; want b.test's answer after the client's 2s", body, err, time.Since(start))
		}
	})
}
