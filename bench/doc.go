// Package bench is the benchmark suite perf engineers run: it runs the
// roles together over real sockets — an origin issuing a schedule of
// periods, edges carouselling and releasing them to multicast groups and
// unicast subscribers, and many receivers — and reports what every
// receiver saw: which periods it got, with which keys, the kernel arrival
// time of each release against its releaseAt, and the skew across
// receivers.
//
// Run is the harness; where the sockets live (loopback, or hosts in network
// namespaces, see Topology) is the caller's choice. Measure runs one
// release scenario (a Scenario: multicast, unicast or mixed receivers,
// simulated edge clock offsets, loss, the one-sendto-per-subscriber
// baseline) and sums it up as a Measurement, which WriteTable, Benchstat
// and JSON report. Tally, Summary and WriteReport turn a live run into
// per-period lines, a summary, report.json and skew.svg. MeasureRelease
// puts embargo beside the peers a team would otherwise use (NATS, a
// WebSocket broadcast): one resource released at releaseAt to subscribers
// in other processes (ServeSubscribers), and WriteReleaseTable prints the
// ratios embargo ÷ peer. `embargo demo` and
// `embargo bench` are thin commands over this package; nothing in the
// engine imports it.
package bench
