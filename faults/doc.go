// Package faults is embargo's fault and attack suite: tests, run as root
// over network namespaces, that prove with numbers that nothing is lost,
// nothing is released early and nothing is let in when datagrams are lost,
// edges die and restart, clocks step, drift or lose sync, receivers join
// late, and every port is fed garbage.
//
// The topology is one lab (see internal/netns/netnstest): an origin host, three edge
// hosts whose clocks carry different simulated offsets, and receiver hosts,
// all on one bridge that carries the multicast group. The test process's
// own clock is the true clock every release is measured against.
//
// Every scenario is a real-time test: it takes the machine first
// (internal/realtime), and it asserts only what load cannot excuse —
// nothing missing once stragglers have had their time, nothing early,
// every key the origin's. Figures of the machine (lateness, skew, opened
// after presentAt) go into one line per scenario starting "RESULT"; the
// README's Reliability section quotes them:
//
//	sudo go test ./faults -count=1 -v | grep RESULT
//
// The scenarios are Linux-only; an ordinary user's run skips every one of
// them, saying why. The package has no exported API.
package faults
