package bench

import (
	"fmt"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// HostClock is the system clock for a run whose roles all share this host,
// and a line saying what it is. A host whose kernel clock is not
// disciplined (no NTP/PTP, as on a laptop or a CI VM) is taken as
// synchronized with a 1 ms bound, which is sound only because origin,
// edges and receivers all read this one clock; production edges never do
// this implicitly.
func HostClock() (ptp.Clock, string, error) {
	c, err := ptp.NewSystem()
	if err != nil {
		return nil, "", err
	}
	r, err := c.Now()
	if err != nil {
		return nil, "", fmt.Errorf("read system clock: %w", err)
	}
	if r.State == ptp.StateSynchronized {
		return c, fmt.Sprintf("clock: system clock, synchronized, ±%v", r.Uncertainty()), nil
	}
	assumed, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
	if err != nil {
		return nil, "", err
	}
	return assumed, fmt.Sprintf("clock: system clock not kernel-synchronized (%s); every role shares it, so the demo assumes ±1ms", r.Reason), nil
}
