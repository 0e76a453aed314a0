package receiver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/receiver/skew"
	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// ErrConfig is wrapped by the reasons New refuses a configuration.
var ErrConfig = errors.New("receiver: invalid config")

// Defaults for Config.
const (
	DefaultMaxAge = 10 * time.Minute
	// window is how many periods below a stream's newest are still
	// accepted: the announce lead plus catch-up, as PROTOCOL.md §7.3.
	window = 32
	// maxBodies bounds the verified bodies awaiting their RELEASE.
	maxBodies = 1024
	// maxEarly bounds RELEASEs kept until their body arrives, and
	// maxEarlyPerPeriod the distinct secrets kept for one period.
	maxEarly          = 256
	maxEarlyPerPeriod = 4
)

// Config configures a Receiver. Trusted, Streams and OnEvent are required.
type Config struct {
	// Trusted holds the origin keys a body must be signed by.
	Trusted *seal.KeyRing
	// Master is the event's master key (seal.MasterKeyLen bytes). Without
	// it, content-key periods are counted as "no-master-key" and never
	// delivered; opaque resources need none.
	Master []byte
	// Streams are the streams to assemble; datagrams of others are dropped.
	Streams []uint32
	// OnEvent receives each period once, from the goroutine that handled
	// its completing datagram. It should return quickly.
	OnEvent func(Event)
	// MaxAge drops periods whose presentAt is older than this by the
	// device clock, so that replayed old periods are never delivered.
	// Zero means DefaultMaxAge; negative disables the check.
	MaxAge time.Duration
	// TAIOffset converts kernel arrival stamps (UTC) to TAI. Zero means
	// ptp.DefaultTAIOffset.
	TAIOffset ptp.TAIOffset
	// Now is the device clock as UTC; nil means time.Now. A test seam.
	Now    func() time.Time
	Logger *slog.Logger
}

// Event is one released period.
type Event struct {
	Stream    uint32
	Period    uint64
	ReleaseAt int64 // TAI ns, from the signed body
	PresentAt int64 // TAI ns, from the signed body
	// Keys are the content keys (payload type 1); Resource is the opaque
	// payload (type 2). Exactly one is set.
	Keys     []seal.ContentKey
	Resource []byte
	// Arrival is the kernel's arrival time of the first RELEASE that opened
	// the commitment (TAI ns), or the user-space time when the socket gave
	// no stamp. Arrival − ReleaseAt is this device's release skew.
	Arrival int64
	// ArrivalByKernel: Arrival is the kernel's receive stamp; false means
	// the source gave none (the portable path, a caller's transport) and
	// the receiver stamped the datagram when it handled it, so Arrival
	// also holds the time the datagram waited to be read.
	ArrivalByKernel bool
	// Opened is when the keys were ready (TAI ns, user space).
	Opened int64
	EdgeID uint32         // the edge whose RELEASE it was
	From   netip.AddrPort // and its address
	// CatchUp: the RELEASE was a catch-up copy for a late joiner, so its
	// arrival says nothing about release skew and Stats.Skew leaves it out.
	CatchUp bool
}

// Receiver turns datagrams into Events. Handle is safe for concurrent use.
type Receiver struct {
	cfg     Config
	log     *slog.Logger
	streams map[uint32]bool
	drops   *counters

	mu       sync.Mutex
	asm      *fec.Assembler
	bodies   map[key]*held
	early    map[key][]early
	earlyN   int
	done     map[key]struct{}
	newest   map[uint32]uint64
	shard    wire.Shard
	release  wire.Release
	opened   []byte
	released []Event // built under mu, delivered after
	skew     skew.Histogram
}

type key struct {
	stream uint32
	period uint64
}

type held struct {
	body []byte
	b    wire.Body
}

// early is a RELEASE that came before its body.
type early struct {
	rel     wire.Release
	arrival stamp
	from    netip.AddrPort
}

// New checks cfg and returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	switch {
	case cfg.Trusted == nil:
		return nil, fmt.Errorf("%w: no trusted origin keys", ErrConfig)
	case len(cfg.Streams) == 0:
		return nil, fmt.Errorf("%w: no streams", ErrConfig)
	case cfg.OnEvent == nil:
		return nil, fmt.Errorf("%w: no OnEvent", ErrConfig)
	case cfg.Master != nil && len(cfg.Master) != seal.MasterKeyLen:
		return nil, fmt.Errorf("%w: master key of %d bytes, want %d", ErrConfig, len(cfg.Master), seal.MasterKeyLen)
	}
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.TAIOffset = cmp.Or(cfg.TAIOffset, ptp.DefaultTAIOffset)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{
		cfg:     cfg,
		log:     log,
		streams: make(map[uint32]bool, len(cfg.Streams)),
		drops:   newCounters(),
		asm:     fec.NewAssembler(cfg.Trusted, fec.WithWindow(window)),
		bodies:  make(map[key]*held),
		early:   make(map[key][]early),
		done:    make(map[key]struct{}),
		newest:  make(map[uint32]uint64),
	}
	for _, s := range cfg.Streams {
		r.streams[s] = true
	}
	return r, nil
}

// Handle processes one datagram that arrived at arrival (the kernel's
// stamp, or the zero Time if there was none: then the device clock, Now)
// from from.
func (r *Receiver) Handle(pkt []byte, arrival time.Time, from netip.AddrPort) {
	kernel := !arrival.IsZero()
	if !kernel {
		arrival = r.cfg.Now()
	}
	r.mu.Lock()
	r.handle(pkt, stamp{r.cfg.TAIOffset.FromTime(arrival), kernel}, from)
	events := r.released
	r.released = nil
	r.mu.Unlock()
	for _, ev := range events {
		r.cfg.OnEvent(ev)
	}
}

// stamp is when a datagram arrived (TAI ns), and whether the kernel said so.
type stamp struct {
	at     int64
	kernel bool
}

func (r *Receiver) handle(pkt []byte, arrival stamp, from netip.AddrPort) {
	h, err := wire.Peek(pkt)
	if err != nil {
		r.drops.add(reasonMalformed)
		return
	}
	switch h.Type {
	case wire.TypeAnnounce:
		if err := r.shard.Decode(pkt); err != nil {
			r.drops.add(reasonMalformed)
			return
		}
		if !r.streams[r.shard.Stream] {
			r.drops.add(reasonUnsubscribed)
			return
		}
		r.onShard(&r.shard)
	case wire.TypeRelease:
		if err := r.release.Decode(pkt); err != nil {
			r.drops.add(reasonMalformed)
			return
		}
		if !r.streams[r.release.Stream] {
			r.drops.add(reasonUnsubscribed)
			return
		}
		r.onRelease(&r.release, arrival, from)
	default:
		r.drops.add(reasonUnexpected)
	}
}
