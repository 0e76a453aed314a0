package edge

import (
	"context"
	"time"

	"github.com/embargo-live/embargo/ptp"
	"github.com/embargo-live/embargo/wire"
)

// quietBefore is how long before a release the carousel holds its rounds,
// so that a burst of ANNOUNCE datagrams (cloned to every local socket, on a
// busy host) is never in the socket's way at the instant.
const quietBefore = 50 * time.Millisecond

// carousel sends each pending period's ANNOUNCE datagrams Rounds times,
// evenly spread from its announce time to its releaseAt.
func (e *Edge) carousel(ctx context.Context) {
	for ctx.Err() == nil {
		r, err := e.cfg.Clock.Now()
		if err != nil {
			e.idle(ctx, e.wakeCarousel, e.cfg.Retry)
			continue
		}
		next := e.sendRounds(r)
		// Wait from now, not from before the sends: a round to many unicast
		// subscribers takes hundreds of milliseconds, and counting them
		// again would make every later round that much late, past its
		// period's release at worst (which then has no ANNOUNCE at all).
		if after, err := e.cfg.Clock.Now(); err == nil {
			r = after
		}
		// At least a spacing: a wake-up already due (a quiet window ending
		// while the clock is uncertain) must not spin on the lock.
		e.idle(ctx, e.wakeCarousel, max(min(time.Duration(next-r.Mid()), time.Second), e.cfg.Spacing))
	}
}

// roundAt is when round i of p is due: the rounds are spread evenly from
// its announce time to quietBefore ahead of its release.
func (e *Edge) roundAt(p *entry, i int) int64 {
	span := max(p.b.ReleaseAt-int64(quietBefore)-p.announce, 0)
	return p.announce + span*int64(i)/int64(e.cfg.Rounds)
}

// sendRounds sends the rounds due at now and returns when the next is due
// (at most a second ahead). A round waits while another period's release,
// due before the round's own, is near or under way; a period's own rounds
// end before its quiet time, or (a late bundle) go out at once.
func (e *Edge) sendRounds(r ptp.Reading) int64 {
	now := r.Mid()
	next := now + int64(time.Second)
	if e.releasing.Load() {
		return now + int64(e.cfg.Spacing)
	}
	var batch [][]byte
	rounds := 0
	e.mu.Lock()
	quiet := int64(-1) // the releaseAt of a pending release near now
	for _, p := range e.pending {
		// The release fires on the clock's earliest bound, which may trail
		// the midpoint by the clock's uncertainty: quiet from when the
		// latest bound nears releaseAt until the earliest is well past it.
		// A release long overdue (held by the clock) quiets nothing.
		if at := p.b.ReleaseAt; at-int64(quietBefore) <= r.Latest && r.Earliest <= at+int64(quietBefore) && (quiet < 0 || at < quiet) {
			quiet = at
		}
	}
	for _, p := range e.pending {
		if p.round >= e.cfg.Rounds {
			continue
		}
		if at := e.roundAt(p, p.round); at > now {
			next = min(next, at)
			continue
		}
		// A period whose rounds have begun keeps its own quiet time: rounds
		// a stall (a slow fan-out) made overdue are dropped once it has
		// begun, not sent in its release's way. A period with no round yet
		// still gets one: without it the RELEASE opens nothing. Judged on
		// the midpoint, as roundAt is, so that no round on schedule is ever
		// dropped, however uncertain the clock.
		if p.round > 0 && p.b.ReleaseAt-int64(quietBefore) <= now {
			p.round = e.cfg.Rounds
			continue
		}
		if quiet >= 0 && quiet < p.b.ReleaseAt {
			next = min(next, quiet+(r.Latest-now)+int64(e.cfg.Spacing))
			continue
		}
		// Every round due goes out, the ones a stall (or a late bundle)
		// made overdue included, each as its own copy of the shards: the
		// loss budget (DefaultRounds) counts rounds, and a collapsed round
		// is one chance where the budget counted several.
		for p.round < e.cfg.Rounds && e.roundAt(p, p.round) <= now {
			batch = append(batch, p.b.Shards...)
			rounds++
			p.round++
		}
		if p.round < e.cfg.Rounds {
			next = min(next, e.roundAt(p, p.round))
		}
	}
	e.mu.Unlock()
	if len(batch) == 0 {
		return next
	}
	e.sendAnnounce(batch, rounds)
	return next
}

// sendAnnounce sends a batch of ANNOUNCE datagrams, rounds carousel rounds'
// worth, to every sender.
func (e *Edge) sendAnnounce(batch [][]byte, rounds int) {
	e.stats.rounds.Add(uint64(rounds))
	for i := range e.cfg.Senders {
		n, err := e.send(i, wire.TypeAnnounce, batch, &e.stats.announceUnsent)
		e.stats.shards.Add(uint64(n))
		if err != nil {
			e.log.Error("send announce", "sender", i, "sent", n, "of", len(batch), "err", err)
		}
	}
}

// announceUnsent sends the ANNOUNCE rounds of the periods taken for
// release (due) that the carousel has sent none of — every round, as the
// carousel would have for rounds long overdue — and marks them done. A
// bundle added after its instant is taken for release at once, often before
// the carousel looks: a RELEASE whose body never went out opens nothing.
// The carousel no longer sees due periods, so no lock is needed for them.
func (e *Edge) announceUnsent(due []*entry) {
	var batch [][]byte
	rounds := 0
	for _, p := range due {
		if p.round == 0 {
			for range e.cfg.Rounds {
				batch = append(batch, p.b.Shards...)
			}
			rounds += e.cfg.Rounds
			p.round = e.cfg.Rounds
		}
	}
	if rounds > 0 {
		e.sendAnnounce(batch, rounds)
	}
}
