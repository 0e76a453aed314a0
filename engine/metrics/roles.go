package metrics

import (
	"maps"
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// RegisterProcess exports what every role exports: embargo_build_info
// (the role, module version, VCS revision, Go version), Go's own build
// info, and the Go runtime and process collectors.
func RegisterProcess(reg prometheus.Registerer, role string) {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help:        "Always 1: the role and the build it runs.",
		ConstLabels: prometheus.Labels{"role": role, "version": version, "revision": revision, "goversion": runtime.Version()}})
	info.Set(1)
	reg.MustRegister(info, collectors.NewBuildInfoCollector(), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// CounterFunc registers a counter of subsystem that reads get at scrape
// time: for a role's own counters.
func CounterFunc(reg prometheus.Registerer, subsystem, name, help string, get func() uint64) {
	counterFunc(reg, subsystem, name, help, get, func(n uint64) uint64 { return n })
}

// CountersByLabel registers a counter of subsystem with one series per
// key of the map get returns at scrape time, labelled label.
func CountersByLabel(reg prometheus.Registerer, subsystem, name, help, label string, get func() map[string]uint64) {
	reg.MustRegister(&byLabel{desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, []string{label}, nil), get: get})
}

type byLabel struct {
	desc *prometheus.Desc
	get  func() map[string]uint64
}

func (c *byLabel) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *byLabel) Collect(ch chan<- prometheus.Metric) {
	m := c.get()
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(m[k]), k)
	}
}
