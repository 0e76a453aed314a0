package device

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// TestRefreshTokens: the device fetches its licence again every
// TokenRefresh and presents the newest token from then on; a failed fetch
// keeps the token it has.
func TestRefreshTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fetches := 0
		d := &Device{log: slog.New(slog.DiscardHandler), tokenRefresh: 5 * time.Minute}
		first := []byte("t0")
		d.subToken.Store(&first)
		d.relicence = func(context.Context) ([]byte, error) {
			fetches++
			if fetches == 2 {
				return nil, errors.New("origin unreachable")
			}
			return []byte{'t', byte('0' + fetches)}, nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		t0 := time.Now()
		go func() { d.refreshTokens(ctx); close(done) }()
		for _, want := range []struct {
			at    time.Duration
			token string
		}{
			{time.Minute, "t0"}, {5*time.Minute + time.Second, "t1"}, {10*time.Minute + time.Second, "t1"}, {15*time.Minute + time.Second, "t3"},
		} {
			time.Sleep(time.Until(t0.Add(want.at)))
			synctest.Wait()
			if got := string(d.token()); got != want.token {
				t.Errorf("at %v: token %q, want %q", want.at, got, want.token)
			}
		}
		cancel()
		<-done
	})
}
