package bench

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// Release variants: embargo's and the peers a team would otherwise use.
const (
	ReleaseMulticast = "embargo-multicast" // an edge releasing to a loopback group
	ReleaseUnicast   = "embargo-unicast"   // an edge's unicast server (prepared sendmmsg)
	PeerNATS         = "nats"              // embedded nats-server, one nats.go connection per subscriber
	PeerWebSocket    = "websocket"         // coder/websocket server writing to each connection in turn
	// embargo's edge to browsers (engine/webedge): every datagram over
	// WebSocket, or over WebTransport (RELEASE as a QUIC datagram); each
	// subscriber runs the device receiver on what arrives.
	BrowserWebSocket    = "browser-websocket"
	BrowserWebTransport = "browser-webtransport"
)

// ReleaseVariants are every release variant, embargo's first.
var ReleaseVariants = []string{ReleaseMulticast, ReleaseUnicast, BrowserWebSocket, BrowserWebTransport, PeerNATS, PeerWebSocket}

// ReleaseConfig is one release of a small resource at releaseAt to
// Subscribers subscribers living in Procs other processes.
type ReleaseConfig struct {
	Variant     string
	Subscribers int
	// Procs is how many subscriber processes share the subscribers
	// [min(4, Subscribers)].
	Procs int
	// Lead is how long before releaseAt the release is scheduled, once
	// every subscriber is ready [300ms + 500µs per subscriber: embargo's
	// subscribers have handled the announcement before the release, as in
	// service, rather than still working through it on this host's cores].
	Lead time.Duration
	// Grace bounds the wait for stragglers after releaseAt [2s + 300µs per
	// subscriber].
	Grace time.Duration
	// Resource is what is released [64 random bytes].
	Resource []byte
	// Clock schedules the release and converts the subscribers' stamps
	// [the system clock assumed synchronized ±1ms].
	Clock ptp.Clock
	// Command starts one subscriber process [this executable, which must
	// call ServeSubscribers first thing in main or TestMain].
	Command func() *exec.Cmd
	// Priority is the SCHED_FIFO priority embargo's edge releases at, as
	// `embargo edge -rt-priority` [ptp.DefaultPriority, as by default;
	// -1: normal priority]: its wait, the first share of the fan-out and
	// the unicast server's sender threads. Where the process may not,
	// every sender runs at normal priority.
	Priority int
	// PeersRealtime gives the peers' senders what embargo's edge has: the
	// wait for releaseAt and the send that follows on one thread at
	// SCHED_FIFO Priority — the WebSocket server's whole write loop,
	// NATS's publish (the server's delivery to each connection runs on
	// its own goroutines, at normal priority).
	PeersRealtime bool
	// Copies is how many copies of the RELEASE embargo's edge sends, at
	// its default spacing [1: loopback loses nothing and the peers send
	// once; edge.DefaultRepeat is what an edge sends by default]. A
	// browser's session is sent the first (over WebTransport the second
	// too, on its stream), a unicast subscriber and a group every copy.
	Copies int
	// CPUProfile, if set, receives a CPU profile (runtime/pprof) of this
	// process — the sender side — over what CPU covers: from the release's
	// scheduling until every subscriber has reported.
	CPUProfile io.Writer
}

// priority is the SCHED_FIFO priority the edge (and with PeersRealtime the
// peers) sends at, or 0 for normal priority: c.Priority where the process
// may.
func (c *ReleaseConfig) priority() int {
	p := cmp.Or(c.Priority, ptp.DefaultPriority)
	if p < 0 || ptp.ProbeRealtime(p) != nil {
		return 0
	}
	return p
}

func (c *ReleaseConfig) defaults() error {
	if !slices.Contains(ReleaseVariants, c.Variant) {
		return fmt.Errorf("bench: release variant %q: want one of %s", c.Variant, strings.Join(ReleaseVariants, ", "))
	}
	if c.Subscribers < 1 {
		return errors.New("bench: a release needs at least 1 subscriber")
	}
	c.Procs = min(max(cmp.Or(c.Procs, 4), 1), c.Subscribers)
	// A peer's server holds a connection per subscriber, embargo's edge a
	// few sockets in all; every subscriber holds a socket in its process.
	// The subscriber processes inherit this one's limit.
	need := uint64(c.Subscribers+c.Procs-1)/uint64(c.Procs) + 64
	if !strings.HasPrefix(c.Variant, "embargo") {
		need = max(need, uint64(c.Subscribers)+64)
	}
	if lim := raiseFileLimit(need); lim > 0 && need > lim {
		return fmt.Errorf("bench: %d subscribers in %d processes need %d open files in a process; the limit is %d (raise ulimit -Hn, or run as root)", c.Subscribers, c.Procs, need, lim)
	}
	c.Copies = cmp.Or(max(c.Copies, 0), 1)
	c.Lead = cmp.Or(c.Lead, 300*time.Millisecond+time.Duration(c.Subscribers)*500*time.Microsecond)
	c.Grace = cmp.Or(c.Grace, 2*time.Second+time.Duration(c.Subscribers)*300*time.Microsecond)
	if c.Resource == nil {
		c.Resource = make([]byte, 64)
		rand.Read(c.Resource)
	}
	if c.Clock == nil {
		sys, err := ptp.NewSystem(ptp.WithAssumeSynchronized(time.Millisecond))
		if err != nil {
			return err
		}
		c.Clock = sys
	}
	if c.Command == nil {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: subscriber processes re-run this executable: %w", err)
		}
		c.Command = func() *exec.Cmd { return exec.Command(exe) }
	}
	return nil
}

// Priorities says at what priority each side sends its release.
func (c ReleaseConfig) Priorities() string {
	p := c.priority()
	if p == 0 {
		return "every sender at normal priority (-rt-priority 0, or SCHED_FIFO not permitted here)"
	}
	s := fmt.Sprintf("embargo's edge sends at SCHED_FIFO %d as by default (wait, first share and fan-out threads)", p)
	if c.PeersRealtime {
		return s + fmt.Sprintf("; the peers wait and send at SCHED_FIFO %d too (NATS: the publish; its server's delivery at normal priority)", p)
	}
	return s + "; the peers at normal priority (-peers-rt: at the edge's)"
}

// Placement says where MeasureRelease puts the sender and the subscribers.
const Placement = "sender in the bench process; subscribers in separate processes on loopback"

// MeasureRelease releases cfg.Resource once at releaseAt to every
// subscriber and sums up what they saw, by their own receive stamps (user
// space, the instant the resource was in a subscriber's hands, and the
// kernel's stamp of what carried it). The sender
// side (edge, NATS server and publisher, or WebSocket server) runs in this
// process, the subscribers in cfg.Procs processes of their own, so their
// receive cost is not charged to the sender.
func MeasureRelease(ctx context.Context, cfg ReleaseConfig) (Release, error) {
	if err := cfg.defaults(); err != nil {
		return Release{}, err
	}
	// Memory is measured with what earlier runs left handed back to the
	// OS, and the peak from here.
	debug.FreeOSMemory()
	resetPeakRSS()
	rss0 := currentRSS()
	s, err := openReleaseSender(&cfg)
	if err != nil {
		return Release{}, err
	}
	defer s.close()
	procs, err := startSubscribers(ctx, &cfg, s.spec())
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	if err != nil {
		return Release{}, err
	}
	if err := s.ready(ctx); err != nil {
		return Release{}, err
	}
	debug.FreeOSMemory() // what the subscriptions hold, not the garbage of making them
	sendRSS := currentRSS() - rss0
	now, err := cfg.Clock.Now()
	if err != nil {
		return Release{}, fmt.Errorf("bench: clock: %w", err)
	}
	releaseAt := now.Latest + int64(cfg.Lead)
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return Release{}, fmt.Errorf("bench: CPU profile: %w", err)
		}
	}
	cpu0 := processCPU()
	out, err := s.release(ctx, releaseAt)
	if err != nil {
		pprof.StopCPUProfile()
		return Release{}, err
	}
	reports, err := collect(ctx, &cfg, procs, releaseAt)
	cpu := processCPU() - cpu0
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return Release{}, err
	}
	r := summarize(cfg.Variant, releaseAt, reports)
	r.Placement = fmt.Sprintf("%s (%d of them)", Placement, cfg.Procs)
	r.PublishLate, r.FanOut, r.Datagrams = out.Lateness, out.FanOut, out.Datagrams
	r.CPU = cpu
	r.PeakRSS = runPeakRSS()
	r.SendMemPerSub = max(sendRSS, 0) / int64(cfg.Subscribers)
	return r, nil
}

// sent is how the sender side's release went: how late its send began
// past releaseAt, and how long it took to hand the resource to every
// subscriber's connection.
type sent struct {
	Lateness, FanOut time.Duration
	Datagrams        uint64 // embargo: handed to the kernel, one per unicast subscriber
}

// releaseSender is the sender side of one variant.
type releaseSender interface {
	spec() subscriberSpec // what subscribers need to connect
	// ready returns once the sender holds every subscription.
	ready(ctx context.Context) error
	// release sends the resource at releaseAt and returns once it is sent.
	release(ctx context.Context, releaseAt int64) (sent, error)
	close()
}

// subscriberProc is one running subscriber process.
type subscriberProc struct {
	cmd    *exec.Cmd
	stdin  interface{ Close() error }
	lines  *bufio.Scanner
	stderr *strings.Builder
	once   sync.Once
}

func (p *subscriberProc) kill() {
	p.once.Do(func() {
		p.stdin.Close()
		if p.cmd.Process != nil {
			p.cmd.Process.Kill()
		}
		p.cmd.Wait()
	})
}

// why is the process's error output, for an error message.
func (p *subscriberProc) why() string {
	if s := strings.TrimSpace(p.stderr.String()); s != "" {
		return ": " + s
	}
	return ""
}

// startSubscribers starts cfg.Procs subscriber processes, sharing the
// subscribers out, and waits until each says its subscribers are ready.
func startSubscribers(ctx context.Context, cfg *ReleaseConfig, spec subscriberSpec) ([]*subscriberProc, error) {
	var procs []*subscriberProc
	first := 0
	for i := range cfg.Procs {
		n := cfg.Subscribers/cfg.Procs + btoi(i < cfg.Subscribers%cfg.Procs)
		spec.First, spec.Count = first, n
		spec.Pace = time.Duration(cfg.Procs) * time.Second / subscribeRate
		first += n
		env, err := json.Marshal(spec)
		if err != nil {
			return procs, err
		}
		cmd := cfg.Command()
		cmd.Env = append(os.Environ(), subscriberEnv+"="+string(env))
		p := &subscriberProc{cmd: cmd, stderr: new(strings.Builder)}
		cmd.Stderr = p.stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return procs, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return procs, err
		}
		p.stdin, p.lines = in, bufio.NewScanner(out)
		p.lines.Buffer(nil, 64<<20)
		if err := cmd.Start(); err != nil {
			return procs, fmt.Errorf("bench: start subscriber process: %w", err)
		}
		procs = append(procs, p)
	}
	// Each process connects its subscribers, then says "ready"; a process
	// that fails says why on stderr and exits.
	ready := make(chan error, len(procs))
	for _, p := range procs {
		go func() {
			if !p.lines.Scan() || p.lines.Text() != "ready" {
				ready <- fmt.Errorf("bench: a subscriber process failed before it was ready%s", p.why())
				return
			}
			ready <- nil
		}()
	}
	timeout := time.NewTimer(readyTimeout(cfg.Subscribers))
	defer timeout.Stop()
	for range procs {
		select {
		case err := <-ready:
			if err != nil {
				return procs, err
			}
		case <-timeout.C:
			return procs, fmt.Errorf("bench: %d subscribers not ready in %v", cfg.Subscribers, readyTimeout(cfg.Subscribers))
		case <-ctx.Done():
			return procs, ctx.Err()
		}
	}
	return procs, nil
}

// readyTimeout bounds connecting n subscribers (a handshake or two each on
// loopback, on a loaded machine).
func readyTimeout(n int) time.Duration { return 20*time.Second + time.Duration(n)*5*time.Millisecond }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// collect waits until every subscriber process has reported (each reports
// once all its subscribers have the resource) or cfg.Grace has passed
// since releaseAt, when it tells the rest to report what they have.
func collect(ctx context.Context, cfg *ReleaseConfig, procs []*subscriberProc, releaseAt int64) ([]subscriberReport, error) {
	type got struct {
		r   subscriberReport
		err error
	}
	reports := make(chan got, len(procs))
	for _, p := range procs {
		go func() {
			var r subscriberReport
			if !p.lines.Scan() {
				reports <- got{err: fmt.Errorf("bench: a subscriber process ended without a report%s", p.why())}
				return
			}
			if err := json.Unmarshal(p.lines.Bytes(), &r); err != nil {
				reports <- got{err: fmt.Errorf("bench: subscriber report: %w", err)}
				return
			}
			reports <- got{r: r}
		}()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	due := make(chan error, 1)
	go func() {
		_, err := ptp.Sleeper{}.WaitUntil(wctx, cfg.Clock, releaseAt+int64(cfg.Grace))
		due <- err
	}()
	var out []subscriberReport
	for range procs {
		select {
		case g := <-reports:
			if g.err != nil {
				return nil, g.err
			}
			out = append(out, g.r)
		case err := <-due:
			if err != nil {
				return nil, err
			}
			for _, p := range procs {
				p.stdin.Close() // report now
			}
			due = nil
			select {
			case g := <-reports:
				if g.err != nil {
					return nil, g.err
				}
				out = append(out, g.r)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return out, nil
}
