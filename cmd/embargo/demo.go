package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// runDemo runs the release pipeline in one process: an origin makes keys
// and signed ANNOUNCEs, an edge carousels their shards over a lossy
// in-memory link and releases RK at releaseAt by commit-wait on the system
// clock, and a receiver rebuilds, verifies, opens and unwraps. Datagrams
// are real encodings; only the network is simulated (multicast and unicast
// edges are issues 4 and 5).
func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("demo", "Run the release pipeline in one process: origin → edge → receiver over a simulated lossy link,\nreleasing each period's key at its agreed instant on this machine's clock.", stdout)
	periods := fs.Int("periods", 5, "key periods to run")
	length := fs.Duration("period", time.Second, "key period length")
	loss := fs.Float64("loss", 0.10, "probability that any one datagram is lost")
	rounds := fs.Int("rounds", 3, "carousel rounds of each ANNOUNCE's shards")
	repeat := fs.Int("repeat", 3, "copies of each RELEASE")
	seed := fs.Uint64("seed", 1, "seed of the simulated loss")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *periods < 1 || *length < 10*time.Millisecond || *loss < 0 || *loss >= 1 || *rounds < 1 || *repeat < 1 {
		return fmt.Errorf("need periods ≥ 1, period ≥ 10ms, 0 ≤ loss < 1, rounds ≥ 1, repeat ≥ 1")
	}

	clock, err := demoClock(stdout)
	if err != nil {
		return err
	}
	_, origin, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	master := make([]byte, seal.MasterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return err
	}
	d := &demo{
		clock: clock, origin: origin, master: master,
		ring: seal.NewKeyRing(origin.Public().(ed25519.PublicKey)),
		loss: *loss, rounds: *rounds, repeat: *repeat,
		rng: mrand.New(mrand.NewPCG(*seed, 0)),
	}
	d.asm = fec.NewAssembler(d.ring)
	fmt.Fprintf(stdout, "demo: %d periods of %v, %.0f%% datagram loss, %d carousel rounds, %d RELEASE copies\n",
		*periods, *length, 100**loss, *rounds, *repeat)

	start, err := clock.Now()
	if err != nil {
		return err
	}
	var late []time.Duration
	delivered := 0
	for p := range *periods {
		releaseAt := start.Latest + int64(p+1)*int64(*length)
		res, err := d.period(ctx, uint64(p+1), releaseAt, releaseAt+int64(*length))
		if err != nil {
			return fmt.Errorf("period %d: %w", p+1, err)
		}
		fmt.Fprintln(stdout, res.line)
		if res.delivered {
			delivered++
			late = append(late, res.lateness)
		}
	}
	slices.Sort(late)
	unc := time.Duration(0)
	if r, err := clock.Now(); err == nil {
		unc = r.Uncertainty()
	}
	fmt.Fprintf(stdout, "summary: %d/%d periods delivered; send lateness past releaseAt by the earliest bound p50 %v, max %v, on top of the ±%v commit-wait (never early)\n",
		delivered, *periods, pct(late, 50), pct(late, 100), unc)
	fmt.Fprintf(stdout, "not built yet: network edges and receivers (multicast, unicast), the origin service, eBPF stamping and the bench suite — see the README's status.\n")
	if delivered != *periods {
		return fmt.Errorf("%d of %d periods not delivered", *periods-delivered, *periods)
	}
	return nil
}

// demoClock is the system clock; a host whose kernel clock is not
// disciplined (no NTP/PTP, as on a laptop or this CI VM) is taken as
// synchronized with a 1 ms bound, which is sound here because origin, edge
// and receiver all read this one clock. Production edges never do this
// implicitly.
func demoClock(stdout io.Writer) (ptp.Clock, error) {
	c, err := ptp.NewSystem()
	if err != nil {
		return nil, err
	}
	r, err := c.Now()
	if err != nil {
		return nil, fmt.Errorf("read system clock: %w", err)
	}
	if r.State == ptp.StateSynchronized {
		fmt.Fprintf(stdout, "clock: system clock, synchronized, ±%v\n", r.Uncertainty())
		return c, nil
	}
	fmt.Fprintf(stdout, "clock: system clock not kernel-synchronized (%s); every role shares it, so the demo assumes ±1ms\n", r.Reason)
	return ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
}

type demo struct {
	clock          ptp.Clock
	origin         ed25519.PrivateKey
	master         []byte
	ring           *seal.KeyRing
	asm            *fec.Assembler
	loss           float64
	rounds, repeat int
	rng            *mrand.Rand
}

type periodResult struct {
	line      string
	delivered bool
	lateness  time.Duration
}

func (d *demo) lost() bool { return d.rng.Float64() < d.loss }

// period runs one key period through origin, edge and receiver.
func (d *demo) period(ctx context.Context, period uint64, releaseAt, presentAt int64) (periodResult, error) {
	const stream = 1
	// Origin: two content keys, wrapped, sealed under a fresh RK, signed, sharded.
	keys := make([]seal.ContentKey, 2)
	for i := range keys {
		_, _ = rand.Read(keys[i].KID[:])
		_, _ = rand.Read(keys[i].Key[:])
	}
	payload, err := seal.WrapKeys(d.master, stream, period, keys, rand.Reader)
	if err != nil {
		return periodResult{}, err
	}
	body, rk, err := seal.BuildAnnounce(d.origin, &seal.Announcement{
		Stream: stream, Period: period, ReleaseAt: releaseAt, PresentAt: presentAt,
		PayloadType: wire.PayloadContentKeys, Payload: payload,
	}, rand.Reader)
	if err != nil {
		return periodResult{}, err
	}
	g, err := fec.ChooseGeometry(len(body), wire.DefaultMaxDatagram, fec.DefaultParityPercent, fec.DefaultMinParity)
	if err != nil {
		return periodResult{}, err
	}
	set, err := fec.Encode(body, g)
	if err != nil {
		return periodResult{}, err
	}
	var shard wire.Shard
	shard.Stream, shard.Period = stream, period
	set.Fill(&shard, 0)
	if err := seal.SignShardRoot(d.origin, &shard); err != nil {
		return periodResult{}, err
	}

	// Edge → receiver: carousel the shards over the lossy link.
	buf := make([]byte, wire.MaxDatagram)
	sent, got := 0, 0
	var rebuilt []byte
	for range d.rounds {
		for i := range g.Shards() {
			set.Fill(&shard, i)
			n, err := shard.Encode(buf)
			if err != nil {
				return periodResult{}, err
			}
			sent++
			if d.lost() {
				continue
			}
			got++
			var rx wire.Shard
			if err := rx.Decode(buf[:n]); err != nil {
				return periodResult{}, err
			}
			out, err := d.asm.Add(&rx)
			if err != nil && !errors.Is(err, fec.ErrDuplicate) && !errors.Is(err, fec.ErrComplete) {
				return periodResult{}, err
			}
			if out != nil {
				rebuilt = out
			}
		}
	}
	head := fmt.Sprintf("period %d: ANNOUNCE %dB as k=%d+m=%d shards, %d/%d datagrams arrived", period, len(body), g.K, g.M, got, sent)
	if rebuilt == nil {
		return periodResult{line: head + ", body NOT rebuilt"}, nil
	}
	var b wire.Body
	if err := b.Decode(rebuilt); err != nil {
		return periodResult{}, err
	}
	if err := d.ring.VerifyAnnounce(rebuilt, &b); err != nil {
		return periodResult{}, err
	}

	// Edge: the RELEASE is built before the instant; only the send happens at it.
	rel := wire.Release{Header: wire.Header{Stream: stream, Period: period}, RK: rk, ReleaseAt: releaseAt, EdgeID: 1}
	late, err := ptp.WaitUntil(ctx, d.clock, releaseAt)
	if err != nil {
		return periodResult{}, fmt.Errorf("edge holds the release: %w", err)
	}
	rel.SentAt = releaseAt + int64(late)
	n, err := rel.Encode(buf)
	if err != nil {
		return periodResult{}, err
	}
	arrived := 0
	var opened []seal.ContentKey
	for range d.repeat {
		if d.lost() {
			continue
		}
		arrived++
		var rx wire.Release
		if err := rx.Decode(buf[:n]); err != nil {
			return periodResult{}, err
		}
		if opened != nil {
			continue
		}
		plain, err := seal.OpenAnnounce(nil, rebuilt, &b, &rx.RK)
		if err != nil {
			return periodResult{}, err
		}
		if opened, err = seal.UnwrapKeys(nil, d.master, b.Stream, b.Period, plain); err != nil {
			return periodResult{}, err
		}
	}
	line := fmt.Sprintf("%s; RELEASE sent at releaseAt+%v by the clock's earliest bound, %d/%d copies arrived", head, late, arrived, d.repeat)
	if opened == nil {
		return periodResult{line: line + ", key NOT delivered"}, nil
	}
	if !sameKeys(opened, keys) {
		return periodResult{}, fmt.Errorf("unwrapped keys differ from the origin's")
	}
	return periodResult{line: line + fmt.Sprintf(", %d content keys unwrapped", len(opened)), delivered: true, lateness: late}, nil
}

func sameKeys(a, b []seal.ContentKey) bool {
	return slices.EqualFunc(a, b, func(x, y seal.ContentKey) bool {
		return bytes.Equal(x.KID[:], y.KID[:]) && bytes.Equal(x.Key[:], y.Key[:])
	})
}

// pct returns the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}
