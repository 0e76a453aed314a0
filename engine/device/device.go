package device

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/embargo-live/embargo/engine/licproxy"
	"github.com/embargo-live/embargo/engine/receiver"
	"github.com/embargo-live/embargo/engine/subscriber"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
)

// ErrConfig is wrapped by the reasons New refuses a Config.
var ErrConfig = errors.New("device: invalid config")

// Config configures a Device: either Session (and Token), or OriginKey
// (and Master).
type Config struct {
	// Session is the URL of an origin's session description
	// (https://host:port/v1/session), or a comma-separated list of its
	// replicas' (fetch.Origins): the first that answers configures the
	// device, and a licence on that replica is asked of the next replica
	// when one fails. The device trusts the origin key it names and,
	// unless Groups or Edges are set, receives from the session's groups
	// and edges.
	Session string
	// Token is the bearer token for the stream's master-key licence, with
	// Session. Without it the device receives without a master key.
	Token string
	// RootCAs are the CAs the origin's certificate must chain to; nil
	// means the system's. Ignored when HTTPClient is set.
	RootCAs *x509.CertPool
	// HTTPClient fetches the session and the licence; nil means a client
	// trusting RootCAs that gives up after 30 s.
	HTTPClient *http.Client

	// OriginKey is the origin's public key when there is no Session.
	OriginKey ed25519.PublicKey
	// Master is the event's master key when there is no Session; nil
	// receives without it (periods are verified, nothing is usable).
	Master []byte

	// Streams are the streams to receive. With a Session, empty means the
	// session's, and any given must be among them; with a Token, exactly
	// one, as each stream has its own master key.
	Streams []uint32
	// Groups are the multicast groups to join and Edges the edges to
	// subscribe to by unicast. With neither (nor Sources), the device
	// joins udp.Loopback; with Edges and no Groups, no group.
	Groups []udp.Group
	Edges  []netip.AddrPort
	// OnlyFrom, if not empty, are the addresses of the edges sending to
	// the Groups: datagrams are then taken only from them, the Edges'
	// addresses and the source-specific Groups' sources, and any other
	// is dropped, counted "foreign-source" (receiver.Config.Sources;
	// OnlyFromAll gives the whole list, for bpf.Filter.SetSources).
	OnlyFrom []netip.Addr
	// CatchUp is how many released periods per stream a unicast
	// subscription asks for (0 … wire.MaxCatchUp).
	CatchUp int
	// TokenRefresh is how often a device configured from a Session with a
	// Token fetches its licence again for a fresh subscription token,
	// which edges that require tokens check on every subscription
	// (default DefaultTokenRefresh: half the origin's default token life).
	TokenRefresh time.Duration
	// Sources are further sources the receiver reads, such as a
	// platform's own transport. Run closes them.
	Sources []receiver.Source

	// LicenceProxy, when not empty, is the TCP address on which the
	// device serves W3C ClearKey licences for released keys to a player
	// (package licproxy), e.g. 127.0.0.1:8080. It must be a loopback
	// address unless LicenceProxyPublic is set.
	LicenceProxy string
	// LicenceProxyOrigins are the web origins (scheme://host[:port]) of
	// the player pages allowed to use the proxy; other pages are refused.
	LicenceProxyOrigins []string
	// LicenceProxyPublic lets the proxy listen on a non-loopback address:
	// every host that reaches it can then take released keys.
	// LicenceProxyHosts are then the names it answers to in the Host
	// header (host or host:port; none: any). On loopback the proxy
	// answers to the loopback names of its port only.
	LicenceProxyPublic bool
	LicenceProxyHosts  []string

	// TAIOffset converts arrival stamps to TAI; zero means the system's
	// where it can be read, else ptp.DefaultTAIOffset.
	TAIOffset ptp.TAIOffset
	// OnEvent receives each released period once, after the licence
	// proxy holds its keys. It may be called from several goroutines at
	// once and should return quickly.
	OnEvent func(receiver.Event)
	Logger  *slog.Logger
}

// DefaultTokenRefresh is Config.TokenRefresh's default.
const DefaultTokenRefresh = 5 * time.Minute

// Device is a receiver wired to its sources and, optionally, a licence
// proxy. New opens everything; Run runs it.
type Device struct {
	r        *receiver.Receiver
	srcs     []receiver.Source
	onlyFrom []netip.Addr // Config.OnlyFrom with the edges and SSM sources; nil: any
	streams  []uint32
	tai      ptp.TAIOffset
	onEvent  func(receiver.Event)
	log      *slog.Logger

	proxy *licproxy.Proxy
	ln    net.Listener // the proxy's
	srv   *http.Server

	// subToken is the current subscription token, refreshed by Run with
	// relicence every tokenRefresh.
	subToken     atomic.Pointer[[]byte]
	relicence    func(context.Context) ([]byte, error)
	tokenRefresh time.Duration

	ran atomic.Bool

	// sessions and licences are the origin replicas the session and the
	// licence come from; nil without a session (or a token).
	sessions, licences *fetch.Origins

	counted []*counted // d.srcs as the receiver reads them
	desc    string     // the sources, for Diagnose
	diag    diagnosis
}

// Stats is a snapshot of a Device.
type Stats struct {
	receiver.Stats
	// LicenceProxy is the proxy's account; zero without a proxy.
	LicenceProxy licproxy.Stats
	// OriginFailovers counts moves from a failing origin replica to the
	// next, for the session and the licence (fetch.Origins).
	OriginFailovers uint64
}

// New configures the device — fetching the session and the master key
// when cfg names a session — and opens its sources and the licence
// proxy's listener. Run runs them; Close releases them if Run is never
// called.
func New(ctx context.Context, cfg Config) (*Device, error) {
	d := &Device{log: cfg.Logger, onEvent: cfg.OnEvent, tai: cfg.TAIOffset}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.tai == 0 {
		d.tai = systemTAI()
	}
	pub, master := cfg.OriginKey, cfg.Master
	d.streams = cfg.Streams
	groups, edges := cfg.Groups, cfg.Edges
	if cfg.Session != "" {
		s, err := fromSession(ctx, cfg)
		if err != nil {
			return nil, err
		}
		pub, master, d.streams = s.pub, s.master, s.streams
		if s.subToken != nil {
			d.subToken.Store(&s.subToken)
		}
		d.relicence, d.tokenRefresh = s.relicence, cmp.Or(cfg.TokenRefresh, DefaultTokenRefresh)
		d.sessions, d.licences = s.sessions, s.licences
		if len(groups) == 0 && len(edges) == 0 {
			groups, edges = s.groups, s.edges
		}
	}
	switch {
	case len(pub) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: no origin key: set Session or OriginKey", ErrConfig)
	case len(d.streams) == 0:
		return nil, fmt.Errorf("%w: no streams", ErrConfig)
	}
	if len(groups) == 0 && len(edges) == 0 && len(cfg.Sources) == 0 {
		groups = []udp.Group{udp.Loopback}
	}
	if len(cfg.OnlyFrom) > 0 {
		d.onlyFrom = slices.Clone(cfg.OnlyFrom)
		for _, e := range edges {
			d.onlyFrom = append(d.onlyFrom, e.Addr())
		}
		for _, g := range groups {
			if g.Source.IsValid() {
				d.onlyFrom = append(d.onlyFrom, g.Source)
			}
		}
	}
	r, err := receiver.New(receiver.Config{
		Trusted: seal.NewKeyRing(pub), Master: master, Streams: d.streams, TAIOffset: d.tai,
		OnEvent: d.deliver, Logger: d.log, Sources: d.onlyFrom,
	})
	if err != nil {
		return nil, err
	}
	d.r = r
	if err := d.open(cfg, groups, edges); err != nil {
		d.release()
		return nil, err
	}
	return d, nil
}

// open listens for the proxy and opens the sources, keeping what it
// opened in d so that release can close it.
func (d *Device) open(cfg Config, groups []udp.Group, edges []netip.AddrPort) error {
	if cfg.LicenceProxy != "" {
		host, _, err := net.SplitHostPort(cfg.LicenceProxy)
		if err != nil {
			return fmt.Errorf("licence proxy %q: %w", cfg.LicenceProxy, err)
		}
		if !cfg.LicenceProxyPublic && !isLoopback(host) {
			return fmt.Errorf("%w: licence proxy %q is not a loopback address, so other hosts could take released keys: listen on 127.0.0.1 or [::1], or allow it explicitly (-licence-proxy-public)", ErrConfig, cfg.LicenceProxy)
		}
		ln, err := net.Listen("tcp", cfg.LicenceProxy)
		if err != nil {
			return fmt.Errorf("licence proxy: %w", err)
		}
		d.ln = ln
		hosts := proxyHosts(ln.Addr().(*net.TCPAddr).Port, cfg.LicenceProxyPublic, cfg.LicenceProxyHosts)
		if hosts == nil {
			d.log.Warn("licence proxy: public, with no -licence-proxy-host: any Host header is answered (DNS rebinding is not refused)")
		}
		d.proxy = licproxy.New(licproxy.Config{AllowOrigins: cfg.LicenceProxyOrigins, Hosts: hosts, Logger: d.log})
		// A held request waits up to MaxWait: the write timeout outlasts it.
		d.srv = &http.Server{Handler: d.proxy, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: licproxy.DefaultMaxWait + 10*time.Second, IdleTimeout: 60 * time.Second}
	}
	for _, g := range groups {
		c, err := udp.Listen(g)
		if err != nil {
			return err
		}
		d.srcs = append(d.srcs, c)
		d.log.Info("listening", "group", g.String())
	}
	for _, e := range edges {
		c, err := subscriber.Dial(subscriber.Config{Edge: e, Streams: d.streams, CatchUp: cfg.CatchUp, Token: d.token, Logger: d.log})
		if err != nil {
			return err
		}
		d.srcs = append(d.srcs, c)
		d.log.Info("subscribing", "edge", e)
	}
	d.srcs = append(d.srcs, cfg.Sources...)
	// The receiver reads through counters (Diagnose); d.srcs stay the
	// sockets themselves, for the eBPF filter to attach to.
	var desc []string
	for _, g := range groups {
		desc = append(desc, "group "+g.String())
	}
	for _, e := range edges {
		desc = append(desc, "edge "+e.String())
	}
	if len(cfg.Sources) > 0 {
		desc = append(desc, fmt.Sprintf("%d other sources", len(cfg.Sources)))
	}
	d.desc = strings.Join(desc, ", ")
	for _, s := range d.srcs {
		d.counted = append(d.counted, &counted{Source: s})
	}
	return nil
}

// token is the subscription token to present, or nil.
func (d *Device) token() []byte {
	if p := d.subToken.Load(); p != nil {
		return *p
	}
	return nil
}

// refreshTokens fetches the licence again every tokenRefresh until ctx
// ends, keeping the subscription token fresh; a failure is logged and the
// old token kept (an edge refuses it only once it expires).
func (d *Device) refreshTokens(ctx context.Context) {
	t := time.NewTicker(d.tokenRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tok, err := d.relicence(ctx)
		if err != nil || tok == nil {
			d.log.Warn("device: subscription token not refreshed", "err", err)
			continue
		}
		d.subToken.Store(&tok)
	}
}

// isLoopback reports whether host (an address or "localhost") is loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// proxyHosts are the Host header values the proxy on port answers to: on
// loopback its loopback names; public, the operator's names (with the
// port unless given), or nil for any.
func proxyHosts(port int, public bool, names []string) []string {
	p := strconv.Itoa(port)
	if !public {
		names = []string{"127.0.0.1", "localhost", "[::1]"}
	}
	var hosts []string
	for _, n := range names {
		if _, _, err := net.SplitHostPort(n); err == nil {
			hosts = append(hosts, n)
			continue
		}
		hosts = append(hosts, n+":"+p)
	}
	return hosts
}

// deliver hands a released period to the proxy, then to the caller.
func (d *Device) deliver(ev receiver.Event) {
	if d.proxy != nil {
		d.proxy.Deliver(ev)
	}
	if d.onEvent != nil {
		d.onEvent(ev)
	}
}

// Streams are the streams the device receives.
func (d *Device) Streams() []uint32 { return d.streams }

// Sources are the sources Run will read, in the order opened: groups,
// edges, then Config.Sources. A caller may attach kernel filters to those
// that are syscall.Conns before Run.
func (d *Device) Sources() []receiver.Source { return d.srcs }

// OnlyFromAll is every address datagrams are taken from (Config.OnlyFrom
// with the edges' and the source-specific groups' addresses), or nil
// when any is.
func (d *Device) OnlyFromAll() []netip.Addr { return slices.Clone(d.onlyFrom) }

// TAIOffset is the offset the receiver converts arrival stamps with.
func (d *Device) TAIOffset() ptp.TAIOffset { return d.tai }

// LicenceProxyAddr is the address the licence proxy listens on, or ""
// without one.
func (d *Device) LicenceProxyAddr() string {
	if d.ln == nil {
		return ""
	}
	return d.ln.Addr().String()
}

// Run receives until ctx ends, then closes everything and returns nil; if
// a source or the licence proxy fails first, it stops the rest and
// returns that error. Run may be called once.
func (d *Device) Run(ctx context.Context) error {
	if d.ran.Swap(true) {
		return errors.New("device: Run called twice")
	}
	g, ctx := errgroup.WithContext(ctx)
	srcs := make([]receiver.Source, len(d.counted))
	for i, c := range d.counted {
		srcs[i] = c
	}
	g.Go(func() error { return d.r.Run(ctx, srcs...) })
	if d.relicence != nil {
		g.Go(func() error { d.refreshTokens(ctx); return nil })
	}
	if d.srv != nil {
		g.Go(func() error {
			if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("licence proxy: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			return d.srv.Close()
		})
	}
	return g.Wait()
}

// Close releases the sources and the proxy's listener when Run has not
// been called; after Run it does nothing.
func (d *Device) Close() error {
	if d.ran.Swap(true) {
		return nil
	}
	d.release()
	return nil
}

func (d *Device) release() {
	for _, s := range d.srcs {
		s.Close()
	}
	if d.ln != nil {
		d.ln.Close()
	}
}

// Stats returns a snapshot of the receiver's and the proxy's counters.
func (d *Device) Stats() Stats {
	st := Stats{Stats: d.r.Stats()}
	if d.proxy != nil {
		st.LicenceProxy = d.proxy.Stats()
	}
	for _, o := range []*fetch.Origins{d.sessions, d.licences} {
		if o != nil {
			st.OriginFailovers += o.Failovers()
		}
	}
	return st
}

// Licences are the origin replicas the device's licence is asked of, or
// nil when it has none to ask for (no session, or no token).
func (d *Device) Licences() *fetch.Origins { return d.licences }

// systemTAI is the system clock's TAI offset where it can be read.
func systemTAI() ptp.TAIOffset {
	if sys, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Second)); err == nil {
		return sys.TAIOffset()
	}
	return ptp.DefaultTAIOffset
}
