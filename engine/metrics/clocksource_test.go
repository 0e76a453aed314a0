package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embargo-live/embargo/engine/metrics"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/ptp/daemon"
)

type fakeSource struct{ st daemon.Status }

func (f *fakeSource) Name() string          { return "chrony /run/chrony/chronyd.sock" }
func (f *fakeSource) Status() daemon.Status { return f.st }

// TestRegisterClockSource: the gauges follow the daemon's status at scrape
// time, labelled with the source.
func TestRegisterClockSource(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := &fakeSource{st: daemon.Status{State: ptp.StateSynchronized, Bound: 1500 * time.Microsecond, DataAge: 2 * time.Second}}
	metrics.RegisterClockSource(reg, f)
	check := func(want map[string]float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			// One source: one series per gauge, labelled with it.
			m := mf.GetMetric()[0]
			if l := m.GetLabel(); len(mf.GetMetric()) != 1 || len(l) != 1 || l[0].GetValue() != f.Name() {
				t.Fatalf("%s: %v, want one series labelled source=%q", mf.GetName(), mf.GetMetric(), f.Name())
			}
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
		for name, v := range want {
			if got[name] != v {
				t.Fatalf("%s = %v, want %v (all: %v)", name, got[name], v, got)
			}
		}
	}
	check(map[string]float64{"embargo_clock_source_state": 2, "embargo_clock_source_bound_seconds": 0.0015, "embargo_clock_source_data_age_seconds": 2})
	f.st = daemon.Status{State: ptp.StateUnsynchronized, Bound: 2 * time.Millisecond, DataAge: 30 * time.Second}
	check(map[string]float64{"embargo_clock_source_state": 0, "embargo_clock_source_bound_seconds": 0.002, "embargo_clock_source_data_age_seconds": 30})
}
