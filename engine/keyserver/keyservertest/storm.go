package keyservertest

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Storm is a kickoff's licence storm: requests POSTs to the licence URL
// url from clients concurrent clients (each made by newClient, its
// connections kept alive), request i bearing tokens[i mod len(tokens)],
// until all are sent or ctx ends. It returns every request's latency in
// ascending order, how many failed (no answer, or not 200), and how long
// the storm took.
func Storm(ctx context.Context, url string, tokens []string, clients, requests int, newClient func() *http.Client) (lat []time.Duration, failed int, elapsed time.Duration) {
	var next, bad atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			client := newClient()
			defer client.CloseIdleConnections()
			var mine []time.Duration
			for n := next.Add(1); n <= int64(requests) && ctx.Err() == nil; n = next.Add(1) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, http.NoBody)
				req.Header.Set("Authorization", "Bearer "+tokens[int(n)%len(tokens)])
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					bad.Add(1)
				}
				if err == nil {
					io.Copy(io.Discard, resp.Body) // so the connection is kept
					resp.Body.Close()
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed = time.Since(start)
	slices.Sort(lat)
	return lat, int(bad.Load()), elapsed
}
