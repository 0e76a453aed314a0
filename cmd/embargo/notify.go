package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"
)

// notifyInterval is how often a role under systemd re-checks its readiness.
var notifyInterval = 500 * time.Millisecond

// notifySystemd speaks systemd's notify protocol (sd_notify(3)) when the
// role runs under a Type=notify unit, as a part of the role in g: READY=1
// the first time ready reports nil, STATUS= with the reason whenever
// readiness changes, WATCHDOG=1 at half the unit's WatchdogSec while the
// role is alive (liveness, not readiness: an edge holding releases on an
// unsynchronized clock must not be killed for it), and STOPPING=1 when ctx
// ends. Outside systemd (no NOTIFY_SOCKET) it does nothing.
func notifySystemd(ctx context.Context, g *errgroup.Group, log *slog.Logger, ready func() error) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog setting ignored", "err", err)
	}
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Warn("systemd notify failed", "state", state, "err", err)
		}
	}
	g.Go(func() error {
		var pet <-chan time.Time
		if watchdog > 0 {
			t := time.NewTicker(watchdog / 2)
			defer t.Stop()
			pet = t.C
			notify(daemon.SdNotifyWatchdog)
		}
		check := time.NewTicker(notifyInterval)
		defer check.Stop()
		announced, last := false, "starting"
		for {
			status := "ready"
			if err := ready(); err != nil {
				status = "not ready: " + err.Error()
			}
			if status != last {
				state := "STATUS=" + status
				if status == "ready" && !announced {
					state = daemon.SdNotifyReady + "\n" + state
					announced = true
				}
				notify(state)
				last = status
			}
			select {
			case <-ctx.Done():
				notify(daemon.SdNotifyStopping)
				return nil
			case <-pet:
				notify(daemon.SdNotifyWatchdog)
			case <-check.C:
			}
		}
	})
}
