package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/ptp/daemon"
)

// ClockSource is the time daemon the clock's bound comes from
// (*daemon.Source).
type ClockSource interface {
	Name() string
	Status() daemon.Status
}

// RegisterClockSource exports the daemon behind the clock: which one, its
// state, the bound it gives and the age of its data, so an operator can
// see a daemon going stale before releases hold.
func RegisterClockSource(reg prometheus.Registerer, s ClockSource) {
	labels := prometheus.Labels{"source": s.Name()}
	gauge := func(name, help string, f func(daemon.Status) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "clock_source",
			Name: name, Help: help, ConstLabels: labels}, func() float64 { return f(s.Status()) }))
	}
	gauge("state", "The daemon's state as the clock reads it: 0 unsynchronized (releases hold), 1 holdover, 2 synchronized.",
		func(st daemon.Status) float64 { return float64(st.State) })
	gauge("bound_seconds", "Half-width of the bound from the daemon's own error estimate, widened with the data's age.",
		func(st daemon.Status) float64 { return st.Bound.Seconds() })
	gauge("data_age_seconds", "Age of the daemon's data (chrony's reference time, ptp4l's last sync) behind the bound.",
		func(st daemon.Status) float64 { return st.DataAge.Seconds() })
}
