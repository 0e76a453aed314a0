package device_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/device"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/internal/freeport"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// TestPortableMulticast: a device whose group is joined through the
// portable path — what macOS, iOS and Windows devices use — delivers every
// period sent to the group by a real sender, with the origin's keys, and
// stamps arrivals itself (the portable path has no kernel stamps).
func TestPortableMulticast(t *testing.T) {
	realtime.Exclusive(t)
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	g := udp.Group{Addr: netip.AddrPortFrom(netip.MustParseAddr("239.255.77.31"), uint16(freeport.One(t))), Hops: udp.DefaultHops}
	conn, err := udp.ListenPortable(g)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan receiver.Event, 8)
	d, err := device.New(t.Context(), device.Config{
		OriginKey: o.PublicKey(), Master: master, Streams: []uint32{1},
		Sources: []receiver.Source{conn}, TAIOffset: ptp.DefaultTAIOffset,
		OnEvent: func(ev receiver.Event) { events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	s, err := udp.NewSender(g)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[uint64][]byte{}
	for p := uint64(1); p <= 3; p++ {
		dgs, keys := period(t, o, 1, p)
		if _, err := s.Send(wire.TypeAnnounce, dgs[:len(dgs)-1]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Send(wire.TypeRelease, dgs[len(dgs)-1:]); err != nil {
			t.Fatal(err)
		}
		want[p] = keys[0].Key[:]
	}
	for range 3 {
		select {
		case ev := <-events:
			if k, ok := want[ev.Period]; !ok || ev.Stream != 1 || !slices.Equal(ev.Keys[0].Key[:], k) || ev.Arrival == 0 || ev.ArrivalByKernel {
				t.Fatalf("event %+v", ev)
			}
			delete(want, ev.Period)
		case <-time.After(10 * time.Second):
			t.Fatalf("periods %v not delivered", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
