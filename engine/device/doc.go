// Package device is the device's wiring as a library: from an origin's
// session description (a URL, a bearer token for the master-key licence,
// the CA to trust) or from keys the caller already holds, it builds the
// receiver, opens its sources — multicast groups through engine/udp,
// unicast edges through engine/unicast with catch-up, and any the caller
// adds — optionally serves the licence proxy for a player
// (engine/licproxy), and runs them all until the context ends or one of
// them fails, returning that failure.
//
// A device team calls it; `embargo recv` is flag parsing and printing
// over it. It links no keystore, CPIX or origin code, and nothing that
// needs root or Linux: a caller that can attach kernel filters (the eBPF
// arrival stamps of package bpf) does so on Sources before Run.
package device
