package udp

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseGroup(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Group
	}{
		{"239.1.2.3:7171", Group{Addr: netip.MustParseAddrPort("239.1.2.3:7171"), Hops: DefaultHops}},
		{"239.1.2.3:7171%eth0/1", Group{Addr: netip.MustParseAddrPort("239.1.2.3:7171"), Interface: "eth0", Hops: 1}},
		{"[ff15::71]:7171%lo/0", Group{Addr: netip.MustParseAddrPort("[ff15::71]:7171"), Interface: "lo", Hops: 0}},
		{"10.0.0.1@232.1.1.1:7171%eth0", Group{Addr: netip.MustParseAddrPort("232.1.1.1:7171"), Source: netip.MustParseAddr("10.0.0.1"), Interface: "eth0", Hops: DefaultHops}},
		{"fd00::1@[ff35::1]:7171", Group{Addr: netip.MustParseAddrPort("[ff35::1]:7171"), Source: netip.MustParseAddr("fd00::1"), Hops: DefaultHops}},
	} {
		got, err := ParseGroup(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q: %+v, want %+v", c.in, got, c.want)
		}
		again, err := ParseGroup(got.String())
		if err != nil || again.Addr != got.Addr || again.Source != got.Source || again.Ifname() != got.Ifname() || again.Hops != got.Hops {
			t.Errorf("%q: String %q reads back as %+v, %v", c.in, got.String(), again, err)
		}
	}
	for _, bad := range []string{
		"", "10.0.0.1:7171", "239.1.2.3", "239.1.2.3:0", "239.1.2.3:7171/256", "239.1.2.3:7171/-2",
		"239.1.2.3:7171%", "fd00::1@239.1.2.3:7171", "239.9.9.9@239.1.2.3:7171", "x@239.1.2.3:7171",
		"239.1.2.3:7171/x",
	} {
		if _, err := ParseGroup(bad); !errors.Is(err, ErrGroup) {
			t.Errorf("%q: %v, want ErrGroup", bad, err)
		}
	}
	if err := Loopback.Check(); err != nil || Loopback.Ifname() != "lo" {
		t.Errorf("default group %v: %v", Loopback, err)
	}
}
