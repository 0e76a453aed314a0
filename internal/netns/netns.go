package netns

import (
	"errors"
	"net/netip"
	"os"
	"slices"
)

// Errors returned by this package. Callers test with errors.Is.
var (
	// ErrNotSupported means the platform has no network namespaces: every
	// non-Linux build returns it.
	ErrNotSupported = errors.New("netns: not supported on this platform")
	// ErrUnavailable means this Linux machine cannot build labs: the process
	// is not root, iproute2's ip is missing, or creating a network namespace
	// is not permitted (an unprivileged container, a seccomp profile).
	ErrUnavailable = errors.New("netns: unavailable")
)

// maxHosts bounds a lab so that every host fits one /24 and every interface
// name stays short.
const maxHosts = 200

// Lab is a set of hosts, each its own network namespace with one veth port on
// a bridge in a hub namespace. A Lab lives until it is closed.
type Lab struct {
	id    string // "emb" and 6 hex digits; prefix of every namespace name
	hub   string // namespace holding the bridge and the hub ends of the veths
	ip    string // path of iproute2's ip
	hosts []*Host
	lock  *os.File // flock held while the lab lives; see sweep_linux.go
}

// Hosts returns the lab's hosts in index order. The slice is a copy.
func (l *Lab) Hosts() []*Host { return slices.Clone(l.hosts) }

// Host returns host i; it panics if i is out of range, like a slice index.
func (l *Lab) Host(i int) *Host { return l.hosts[i] }

// Host is one namespace of a lab. Its fields are fixed when Build returns.
type Host struct {
	// Name is the network namespace's name, as `ip netns list` shows it.
	Name string
	// Ifname is the host's only non-loopback interface. The name is the same
	// on every host: it is resolved inside the host's namespace, so look it
	// up (net.InterfaceByName) inside Do, never outside.
	Ifname string
	// IPv4 is the host's address in a /24 shared by every host of the lab.
	IPv4 netip.Addr
	// IPv6 is the host's address in a /64 shared by every host of the lab,
	// added without duplicate address detection so it is usable at once.
	IPv6 netip.Addr
}
