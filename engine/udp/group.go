package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

var (
	// ErrGroup is wrapped by the reasons a Group is refused.
	ErrGroup = errors.New("udp: invalid group")
	// ErrNotSupported is wrapped off Linux.
	ErrNotSupported = errors.New("udp: not supported on this platform")
	// ErrClosed is returned by reads and sends after Close.
	ErrClosed = net.ErrClosed
)

// DefaultHops means "0 on a loopback interface, 1 elsewhere".
const DefaultHops = -1

// Group is one multicast destination on one interface.
type Group struct {
	// Addr is the group and UDP port, IPv4 (224.0.0.0/4) or IPv6 (ff00::/8).
	Addr netip.AddrPort
	// Source, if valid, makes the group source-specific (SSM): receivers
	// join (Source, Addr) and take datagrams from Source only.
	Source netip.Addr
	// Interface names the interface; "" means the loopback interface "lo".
	Interface string
	// Hops is the TTL / hop limit of sent datagrams, 0…255, or DefaultHops.
	// 0 keeps datagrams on this host.
	Hops int
}

// Loopback is the default group: 239.255.77.71:7171 on lo with hop limit 0,
// safe on any laptop.
var Loopback = Group{Addr: netip.MustParseAddrPort("239.255.77.71:7171"), Hops: DefaultHops}

// Check reports what is wrong with g, if anything.
func (g Group) Check() error {
	a := g.Addr.Addr()
	switch {
	case !a.IsValid() || !a.IsMulticast():
		return fmt.Errorf("%w: %v is not a multicast address", ErrGroup, a)
	case g.Addr.Port() == 0:
		return fmt.Errorf("%w: no port", ErrGroup)
	case g.Source.IsValid() && (g.Source.Is4() != a.Is4() || g.Source.IsMulticast() || g.Source.IsUnspecified()):
		return fmt.Errorf("%w: source %v for group %v", ErrGroup, g.Source, a)
	case g.Hops < DefaultHops || g.Hops > 255:
		return fmt.Errorf("%w: hop limit %d", ErrGroup, g.Hops)
	}
	return nil
}

// Ifname is the interface name g uses.
func (g Group) Ifname() string {
	if g.Interface == "" {
		return "lo"
	}
	return g.Interface
}

// String is the form ParseGroup reads: [source@]group:port[%interface][/hops].
func (g Group) String() string {
	var b strings.Builder
	if g.Source.IsValid() {
		b.WriteString(g.Source.String() + "@")
	}
	b.WriteString(g.Addr.String())
	b.WriteString("%" + g.Ifname())
	if g.Hops != DefaultHops {
		b.WriteString("/" + strconv.Itoa(g.Hops))
	}
	return b.String()
}

// ParseGroup reads [source@]group:port[%interface][/hops], e.g.
// "239.1.2.3:7171", "[ff15::71]:7171%eth0/1" or
// "10.0.0.1@232.1.1.1:7171%eth0". It is the flag and config syntax.
func ParseGroup(s string) (Group, error) {
	g := Group{Hops: DefaultHops}
	rest := s
	if at := strings.LastIndexByte(rest, '/'); at >= 0 {
		h, err := strconv.Atoi(rest[at+1:])
		if err != nil {
			return Group{}, fmt.Errorf("%w: %q: hop limit: %v", ErrGroup, s, err)
		}
		g.Hops, rest = h, rest[:at]
	}
	if at := strings.LastIndexByte(rest, '%'); at >= 0 && at > strings.LastIndexByte(rest, ']') {
		g.Interface, rest = rest[at+1:], rest[:at]
		if g.Interface == "" {
			return Group{}, fmt.Errorf("%w: %q: empty interface", ErrGroup, s)
		}
	}
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		src, err := netip.ParseAddr(rest[:at])
		if err != nil {
			return Group{}, fmt.Errorf("%w: %q: source: %v", ErrGroup, s, err)
		}
		g.Source, rest = src, rest[at+1:]
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return Group{}, fmt.Errorf("%w: %q: %v", ErrGroup, s, err)
	}
	g.Addr = ap
	if err := g.Check(); err != nil {
		return Group{}, err
	}
	return g, nil
}

// hops is the hop limit to set on a sender for g on ifi.
func (g Group) hops(ifi *net.Interface) int {
	if g.Hops != DefaultHops {
		return g.Hops
	}
	if ifi.Flags&net.FlagLoopback != 0 {
		return 0
	}
	return 1
}
