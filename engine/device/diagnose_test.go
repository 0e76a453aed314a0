package device_test

import (
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/embargo-live/embargo/engine/device"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/ptp"
)

// TestDiagnose: a device that delivers nothing says why, naming where the
// datagrams came from and the likely fix: datagrams signed by another
// origin (a wrong -pub), keys that do not unwrap (a wrong -master), no
// master key, or nothing arriving at all. A receiver used to print nothing
// for the whole run in each of these cases.
func TestDiagnose(t *testing.T) {
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, otherMaster, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  device.Config
		want string
	}{
		{"wrong origin key", device.Config{OriginKey: other.PublicKey(), Master: master}, "datagrams from 192.0.2.1 failed verification: wrong origin key"},
		{"wrong master key", device.Config{OriginKey: o.PublicKey(), Master: otherMaster}, "did not unwrap: wrong master key"},
		{"no master key", device.Config{OriginKey: o.PublicKey()}, "no master key to unwrap them"},
		{"right keys", device.Config{OriginKey: o.PublicKey(), Master: master}, ""},
		{"from the edge", device.Config{OriginKey: o.PublicKey(), Master: master, OnlyFrom: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, ""},
		{"not from the edge", device.Config{OriginKey: o.PublicKey(), Master: master, OnlyFrom: []netip.Addr{netip.MustParseAddr("198.51.100.7")}}, "from 192.0.2.1 were dropped: their address is not among the edges'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newPipe()
				c.cfg.Streams, c.cfg.Sources, c.cfg.TAIOffset = []uint32{1}, []receiver.Source{src}, ptp.DefaultTAIOffset
				d, err := device.New(t.Context(), c.cfg)
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error)
				go func() { done <- d.Run(t.Context()) }()
				if got := d.Diagnose(); !strings.Contains(got, "no datagram arrived from 1 other sources") {
					t.Errorf("before anything arrived: %q", got)
				}
				dgs, _ := period(t, o, 1, 1)
				for _, dg := range dgs {
					src.ch <- dg
				}
				synctest.Wait()
				got := d.Diagnose()
				if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
					t.Errorf("Diagnose() = %q, want …%q…", got, c.want)
				}
				src.Close()
				<-done
			})
		})
	}
}
