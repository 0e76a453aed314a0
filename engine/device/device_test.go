package device_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/embargo-live/embargo/engine/clearkey"
	"github.com/embargo-live/embargo/engine/datagram"
	"github.com/embargo-live/embargo/engine/device"
	"github.com/embargo-live/embargo/engine/origin"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/internal/memhttp"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

var edgeAddr = netip.MustParseAddrPort("192.0.2.1:7171")

// pipe is an in-memory Source: the test sends datagrams, or ends it with
// an error.
type pipe struct {
	ch     chan []byte
	fail   chan error
	closed chan struct{}
	once   sync.Once
}

func newPipe() *pipe {
	return &pipe{ch: make(chan []byte, 64), fail: make(chan error, 1), closed: make(chan struct{})}
}

func (p *pipe) ReadBatch(ms []datagram.Message) (int, error) {
	select {
	case d := <-p.ch:
		ms[0].N = copy(ms[0].Buf, d)
		ms[0].From, ms[0].Arrival, ms[0].Truncated = edgeAddr, time.Time{}, false
		return 1, nil
	case err := <-p.fail:
		return 0, err
	case <-p.closed:
		return 0, net.ErrClosed
	}
}

func (p *pipe) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// period makes stream's period p, released now and presented a second
// later, and returns its datagrams (the ANNOUNCE shards, then the
// RELEASE) and its content keys.
func period(t *testing.T, o *origin.Origin, stream uint32, p uint64) ([][]byte, []seal.ContentKey) {
	t.Helper()
	keys, err := o.NewContentKeys(2)
	if err != nil {
		t.Fatal(err)
	}
	r := ptp.DefaultTAIOffset.FromTime(time.Now())
	b, err := o.Keys(stream, p, origin.Instants{ReleaseAt: r, PresentAt: r + int64(time.Second)}, keys)
	if err != nil {
		t.Fatal(err)
	}
	rel := wire.Release{Header: wire.Header{Stream: stream, Period: p}, RK: b.RK, ReleaseAt: b.ReleaseAt, SentAt: b.ReleaseAt, EdgeID: 7}
	d := make([]byte, wire.ReleaseLen)
	if _, err := rel.Encode(d); err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(b.Shards), d), keys
}

// fakeOrigin serves a session description offering streams and the master
// key of each to the bearer of token; tests call it in memory (memhttp).
type fakeOrigin struct {
	o       *origin.Origin
	master  []byte
	streams []uint32
	token   string

	mu       sync.Mutex
	licences []string // paths of licence requests granted
}

func (f *fakeOrigin) ServeHTTP(rec http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/session":
		json.NewEncoder(rec).Encode(session.Session{
			OriginKey: base64.StdEncoding.EncodeToString(f.o.PublicKey()), Streams: f.streams,
			Licence: "https://origin.test/v1/streams/{stream}/licence",
		})
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/licence"):
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			rec.WriteHeader(http.StatusUnauthorized)
			break
		}
		lic, err := clearkey.MarshalMasterLicence(f.master)
		if err != nil {
			http.Error(rec, err.Error(), http.StatusInternalServerError)
			break
		}
		f.mu.Lock()
		f.licences = append(f.licences, r.URL.Path)
		f.mu.Unlock()
		rec.Write(lic)
	default:
		rec.WriteHeader(http.StatusNotFound)
	}
}

func newFakeOrigin(t *testing.T, streams ...uint32) *fakeOrigin {
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return &fakeOrigin{o: o, master: master, streams: streams, token: "s3cret"}
}

// TestFromSession: a device configured from a session trusts the session's
// origin key, fetches the chosen stream's master key with the token, and
// delivers each released period's content keys, once.
func TestFromSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := newFakeOrigin(t, 4, 5)
		src := newPipe()
		events := make(chan receiver.Event, 4)
		d, err := device.New(t.Context(), device.Config{
			Session: "https://origin.test/v1/session", Token: fo.token, HTTPClient: memhttp.Client(fo),
			Streams: []uint32{5}, Sources: []receiver.Source{src}, TAIOffset: ptp.DefaultTAIOffset,
			OnEvent: func(ev receiver.Event) { events <- ev },
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Streams(); !slices.Equal(got, []uint32{5}) {
			t.Errorf("streams %v", got)
		}
		if want := []string{"/v1/streams/5/licence"}; !slices.Equal(fo.licences, want) {
			t.Errorf("licences %v, want %v", fo.licences, want)
		}
		if len(d.Sources()) != 1 || d.LicenceProxyAddr() != "" {
			t.Errorf("sources %d, proxy %q: want only the one given", len(d.Sources()), d.LicenceProxyAddr())
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- d.Run(ctx) }()
		dgs, keys := period(t, fo.o, 5, 3)
		other, _ := period(t, fo.o, 4, 3) // a stream the device did not choose
		for _, dg := range append(append(dgs, other...), dgs[len(dgs)-1]) {
			src.ch <- dg
		}
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		close(events)
		var got []receiver.Event
		for ev := range events {
			got = append(got, ev)
		}
		if len(got) != 1 || got[0].Stream != 5 || got[0].Period != 3 || !slices.Equal(got[0].Keys, keys) {
			t.Fatalf("events %+v, want stream 5 period 3 with its keys", got)
		}
		if st := d.Stats(); st.Delivered != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestSourceErrorEndsRun: a source that fails ends Run with its error,
// and the other sources are closed.
func TestSourceErrorEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o, _, err := origin.Generate()
		if err != nil {
			t.Fatal(err)
		}
		a, b := newPipe(), newPipe()
		d, err := device.New(t.Context(), device.Config{
			OriginKey: o.PublicKey(), Streams: []uint32{1}, Sources: []receiver.Source{a, b}, TAIOffset: ptp.DefaultTAIOffset,
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- d.Run(t.Context()) }()
		broken := errors.New("interface went away")
		b.fail <- broken
		if err := <-done; !errors.Is(err, broken) {
			t.Fatalf("Run: %v, want %v", err, broken)
		}
		select {
		case <-a.closed:
		default:
			t.Error("the healthy source was left open")
		}
		if err := d.Run(t.Context()); err == nil {
			t.Error("a second Run did not fail")
		}
	})
}

func TestConfigRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := newFakeOrigin(t, 4, 5)
		client := memhttp.Client(fo)
		for _, c := range []struct {
			name string
			cfg  device.Config
			want string
		}{
			{"no key", device.Config{Streams: []uint32{1}}, "no origin key"},
			{"no streams", device.Config{OriginKey: fo.o.PublicKey()}, "no streams"},
			{"two streams, one licence", device.Config{Session: "https://origin.test/v1/session", Token: fo.token, HTTPClient: client}, "pick one"},
			{"a stream not offered", device.Config{Session: "https://origin.test/v1/session", HTTPClient: client, Streams: []uint32{9}}, "not in the session"},
			{"a wrong token", device.Config{Session: "https://origin.test/v1/session", Token: "guess", HTTPClient: client, Streams: []uint32{4}}, "401"},
			{"no session there", device.Config{Session: "https://origin.test/nothing", HTTPClient: client}, "404"},
		} {
			d, err := device.New(t.Context(), c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
			}
			if d != nil {
				d.Close()
			}
		}
	})
}

func TestChooseStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, c := range []struct {
			offered, asked []uint32
			licence        bool
			want           []uint32
			err            string
		}{
			{offered: []uint32{4}, want: []uint32{4}},
			{offered: []uint32{4, 5}, asked: []uint32{5}, licence: true, want: []uint32{5}},
			{offered: []uint32{4, 5}, want: []uint32{4, 5}},
			{offered: []uint32{4, 5}, licence: true, err: "pick one"},
			{offered: []uint32{4}, asked: []uint32{9}, err: "not in the session"},
			{offered: nil, err: "no streams"},
		} {
			fo := newFakeOrigin(t, c.offered...)
			token := ""
			if c.licence {
				token = fo.token
			}
			d, err := device.New(t.Context(), device.Config{
				Session: "https://origin.test/v1/session", Token: token, HTTPClient: memhttp.Client(fo),
				Streams: c.asked, Sources: []receiver.Source{newPipe()}, TAIOffset: ptp.DefaultTAIOffset,
			})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Errorf("%+v: %v, want error %q", c, err, c.err)
				}
				continue
			}
			if err != nil || !slices.Equal(d.Streams(), c.want) {
				t.Errorf("%+v: %v, %v", c, d.Streams(), err)
			}
			d.Close()
		}
	})
}

// TestLicenceProxy: with LicenceProxy the device serves a player, over
// real HTTP, the keys of each period it releases; Run closes the proxy
// when it ends.
func TestLicenceProxy(t *testing.T) {
	realtime.Exclusive(t)
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	src := newPipe()
	delivered := make(chan receiver.Event, 1)
	d, err := device.New(t.Context(), device.Config{
		OriginKey: o.PublicKey(), Master: master, Streams: []uint32{1}, Sources: []receiver.Source{src},
		LicenceProxy: "127.0.0.1:0", OnEvent: func(ev receiver.Event) { delivered <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := d.LicenceProxyAddr()
	if addr == "" {
		t.Fatal("no proxy address")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	dgs, keys := period(t, o, 1, 1)
	for _, dg := range dgs {
		src.ch <- dg
	}
	<-delivered // the proxy holds the keys before OnEvent hears of them
	body, err := clearkey.MarshalRequest([][16]byte{keys[1].KID}, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var lic json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&lic); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got, err := clearkey.ParseLicence(lic)
	if err != nil || !slices.Equal(got, keys[1:]) {
		t.Fatalf("licence %s: %v", lic, err)
	}
	// A page that rebound its own DNS name to 127.0.0.1 reaches the same
	// socket with its own name in Host: refused.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(string(body)))
	req.Host = "rebind.attacker.example:" + addr[strings.LastIndexByte(addr, ':')+1:]
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("rebound Host: %v, %v; want 421", resp, err)
	} else {
		resp.Body.Close()
	}
	if st := d.Stats(); st.LicenceProxy.Outcomes["granted"] != 1 || st.LicenceProxy.Outcomes["bad-host"] != 1 || st.Delivered != 1 {
		t.Errorf("stats %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the proxy still listens after Run")
	}
}

// TestLicenceProxyLoopbackOnly: the proxy refuses to listen where other
// hosts could reach it unless the operator says so.
func TestLicenceProxyLoopbackOnly(t *testing.T) {
	o, master, err := origin.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0"} {
		_, err := device.New(t.Context(), device.Config{OriginKey: o.PublicKey(), Master: master, Streams: []uint32{1}, Sources: []receiver.Source{newPipe()}, LicenceProxy: addr})
		if !errors.Is(err, device.ErrConfig) {
			t.Errorf("licence proxy on %q: %v, want ErrConfig", addr, err)
		}
	}
	d, err := device.New(t.Context(), device.Config{OriginKey: o.PublicKey(), Master: master, Streams: []uint32{1}, Sources: []receiver.Source{newPipe()},
		LicenceProxy: "0.0.0.0:0", LicenceProxyPublic: true})
	if err != nil {
		t.Fatalf("public, as asked: %v", err)
	}
	d.Close()
}

// deadOr fails every request to host dead.test, as a replica that is
// down would, and serves the rest with next.
type deadOr struct{ next http.RoundTripper }

func (d deadOr) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == "dead.test" {
		return nil, errors.New("dial tcp: connection refused")
	}
	return d.next.RoundTrip(r)
}

// TestFromSessionReplicas: a device given two replicas' session URLs, the
// first down, is configured by the second and gets its licence there too
// (the licence is on the answering replica's host: that replica is asked
// first, the dead one only after it); the session's move is counted.
func TestFromSessionReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := newFakeOrigin(t, 5)
		d, err := device.New(t.Context(), device.Config{
			Session: "https://dead.test/v1/session, https://origin.test/v1/session", Token: fo.token,
			HTTPClient: &http.Client{Transport: deadOr{&memhttp.Transport{Handler: fo}}},
			Sources:    []receiver.Source{newPipe()}, TAIOffset: ptp.DefaultTAIOffset,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if want := []string{"/v1/streams/5/licence"}; !slices.Equal(fo.licences, want) {
			t.Errorf("licences %v, want %v", fo.licences, want)
		}
		// One failover, the session's: the licence starts at the replica
		// that gave the session, not at the dead one again.
		if n := d.Stats().OriginFailovers; n != 1 || d.Licences().Current() != "https://origin.test" {
			t.Errorf("failovers %d, licences from %s; want 1, https://origin.test", n, d.Licences().Current())
		}
	})
}
