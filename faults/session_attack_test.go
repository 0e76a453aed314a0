//go:build linux

package faults

// Issue 14's attacks on unicast sessions, each beside an unattacked
// control receiver in the same lab and run: a blind sweep of spoofed
// REFUSEDs, a session kick with an observed session id, and an
// unauthenticated subscription flood at an edge that requires tokens.
// The edge's keepalive and expiry are short here (300 ms, 1 s), so that a
// client the attack stopped, or a subscription it ended, would lose
// periods within the few seconds each scenario runs.

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/unicast"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

const (
	sesKeepalive = 300 * time.Millisecond
	sesExpiry    = time.Second
	sesAttack    = 3 * time.Second // each attack's duration
	sesRate      = 20_000          // datagrams a second, at most
)

func TestSessionAttack(t *testing.T) {
	realtime.Exclusive(t)
	t.Run("refused-sweep", sesRefusedSweep)
	t.Run("session-kick", sesKick)
	t.Run("token-flood", sesTokenFlood)
}

// sesLab is one scenario's lab: an edge with short sessions (changed by
// mod), a victim and a control subscribed from two hosts, each a receiver
// in a child process of its own (TestSessionReceiverChild), so that its
// CPU and memory are its own, and an attacker host.
type sesLab struct {
	*lab
	edge            *runningEdge
	victim, control *fgChildProc
	recs            []*recorder
}

// newSesLab starts the lab; token, if not nil, is the subscription token
// both receivers present.
func newSesLab(t *testing.T, mod func(*unicast.SessionConfig), token []byte) *sesLab {
	l := newLab(t, 3, atkPeriod, atkLead, atkStart)
	re := l.startEdge(0, edgeOpts{unicast: true, periods: periods(0, atkPeriods), sessions: func(c *unicast.SessionConfig) {
		c.Keepalive, c.Expiry = sesKeepalive, sesExpiry
		if mod != nil {
			mod(c)
		}
	}})
	s := &sesLab{lab: l, edge: re}
	env := append(childKeys(l), sesChild+"=1", sesChildEdge+"="+l.edgeAddr(0).String(), fmt.Sprintf("%s=%x", sesChildToken, token))
	s.victim = startChild(t, l.recvHost(0), "TestSessionReceiverChild", env)
	s.control = startChild(t, l.recvHost(1), "TestSessionReceiverChild", env)
	s.recs = []*recorder{s.victim.rec, s.control.rec}
	return s
}

// ready waits for a first period at both receivers and returns the first
// period the scenario judges.
func (s *sesLab) ready(t *testing.T) uint64 {
	s.victim.ready(t)
	s.control.ready(t)
	return s.sched.Current(truth()) + 1
}

// mark records both receivers' CPU time: at the attack's start and end.
func (s *sesLab) mark() {
	s.victim.mark()
	s.control.mark()
}

// judged waits for periods [first, end) at both receivers (or the
// stragglers' wait) and returns the victim's and the control's verdicts.
func (s *sesLab) judged(t *testing.T, first, end uint64) (victim, control verdict) {
	ps := periods(first, end)
	untilTrue(s.sched.At(end - 1).PresentAt)
	wait.Until(stragglers, func() bool { return delivered(s.recs, ps) })
	return s.judge(s.recs[:1], ps), s.judge(s.recs[1:], ps)
}

// end ends both receivers (they leave the edge) and collects their
// accounts: costs and check read them.
func (s *sesLab) end(t *testing.T) {
	s.victim.finish(t)
	s.control.finish(t)
}

// costs says what the receivers' processes spent during the attack, for
// a RESULT line: the CPU between the marks and the peak RSS.
func (s *sesLab) costs(took time.Duration) string {
	return fmt.Sprintf("victim receiver CPU %.1f%% during the attack, peak RSS %s; control CPU %.1f%%, peak RSS %s",
		100*s.victim.floodCPU().Seconds()/took.Seconds(), s.victim.rss, 100*s.control.floodCPU().Seconds()/took.Seconds(), s.control.rss)
}

func (s *sesLab) check(t *testing.T, victim, control verdict) {
	t.Helper()
	if !victim.ok() || !control.ok() {
		t.Errorf("victim %+v, control %+v: want no period missing or early", victim, control)
	}
	if st := s.victim.sub; st.Restarts != 0 {
		t.Errorf("the victim's session started over %d times: %+v", st.Restarts, st)
	}
}

// attacker is a UDP socket from the attacker's host to the edge, closed
// when the test ends.
func (s *sesLab) attacker(t *testing.T) *net.UDPConn {
	var c *net.UDPConn
	if err := s.recvHost(2).Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(s.edgeAddr(0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// localPorts is the kernel's ephemeral port range on h: where a blind
// attacker sweeps.
func localPorts(t *testing.T, h interface{ Do(func() error) error }) (lo, hi int) {
	err := h.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
		if err != nil {
			return err
		}
		_, err = fmt.Sscan(strings.TrimSpace(string(b)), &lo, &hi)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return lo, hi
}

// sesRefusedSweep: blind spoofed REFUSEDs — nonce 0 and a guessed one,
// retry-after 2³²−1 ms, every reason — from the edge's address to every
// ephemeral port of the victim's host. The client believes none.
func sesRefusedSweep(t *testing.T) {
	s := newSesLab(t, nil, nil)
	first := s.ready(t)
	victimIP := s.recvHost(0).IPv4
	spoof := atkNewSpoofer(t, s.recvHost(2), netip.AddrPortFrom(victimIP, 0))
	lo, hi := localPorts(t, s.recvHost(0))
	var msgs [][]byte
	for _, r := range []wire.Reason{wire.ReasonEdgeFull, wire.ReasonUnknownSession, wire.ReasonBadCookie, wire.ReasonShuttingDown} {
		for _, n := range [][wire.NonceLen]byte{{}, {0xde, 0xad}} {
			msgs = append(msgs, atkEncode(make([]byte, 0, wire.RefusedLen), &wire.Refused{Nonce: n, Reason: r, RetryAfterMs: ^uint32(0)}))
		}
	}
	s.mark()
	start := time.Now()
	sent, bytes := 0, 0
	for time.Since(start) < sesAttack {
		for port := lo; port <= hi && time.Since(start) < sesAttack; port++ {
			spoof.dst = netip.AddrPortFrom(victimIP, uint16(port))
			d := msgs[sent%len(msgs)]
			if spoof.send(s.edgeAddr(0), d) == nil {
				sent++
				bytes += len(d)
			}
			if ahead := time.Duration(float64(sent)/sesRate*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead) // pacing, not synchronization
			}
		}
	}
	took := time.Since(start)
	s.mark()
	end := s.sched.Current(truth()) + 3
	victim, control := s.judged(t, first, end)
	s.end(t)
	st := s.victim.sub
	result(t, "%d spoofed REFUSEDs (%d B) over ports %d-%d at %.0f/s for %v; victim %d of %d periods missed, %d early (control %d, %d); victim ignored %d, refused %d, restarts %d; amplification 0 (a client answers no REFUSED); %s",
		sent, bytes, lo, hi, float64(sent)/took.Seconds(), took.Round(time.Millisecond), victim.missing, end-first, victim.early, control.missing, control.early, st.Ignored, st.Refused, st.Restarts, s.costs(took))
	s.check(t, victim, control)
	if st.Refused != 0 || st.Ignored == 0 {
		t.Errorf("victim stats %+v: want every spoofed REFUSED that reached it ignored", st)
	}
}

// sesKick: an attacker who observed the victim's KEEPALIVE sends six
// KEEPALIVEs with its session id (forged MAC) and six replays of the
// observed datagram from another port, answering every CHALLENGE it gets
// with a RESPONSE it cannot sign. The subscription never moves or ends.
func sesKick(t *testing.T) {
	s := newSesLab(t, nil, nil)
	first := s.ready(t)
	var observed []byte
	wait.For(t, 5*time.Second, "a KEEPALIVE to observe", func() bool { observed = s.victim.observe(); return observed != nil })
	var ka wire.Keepalive
	if err := ka.Decode(observed); err != nil {
		t.Fatal(err)
	}
	atk := s.attacker(t)
	// Also from another port of the victim's own address, spoofed.
	spoof := atkNewSpoofer(t, s.recvHost(2), s.edgeAddr(0))
	other := netip.AddrPortFrom(s.recvHost(0).IPv4, 1)
	sent, bytes, challenges := 0, 0, 0
	s.mark()
	start := time.Now()
	buf := make([]byte, wire.MaxDatagram)
	for i := range 6 {
		forged := atkEncode(make([]byte, 0, wire.KeepaliveLen), &wire.Keepalive{SessionID: ka.SessionID, Seq: ka.Seq + uint32(i) + 1})
		for _, d := range [][]byte{forged, observed} {
			if _, err := atk.Write(d); err != nil {
				t.Fatal(err)
			}
			if spoof.send(other, d) != nil {
				t.Fatal("spoof")
			}
			sent, bytes = sent+2, bytes+2*len(d)
		}
		// Answer what came back (a CHALLENGE for the replay) with an
		// unsigned RESPONSE.
		atk.SetReadDeadline(time.Now().Add(sesAttack / 6))
		for {
			n, err := atk.Read(buf)
			if err != nil {
				break
			}
			var ch wire.Challenge
			if ch.Decode(buf[:n]) == nil {
				challenges++
				r := atkEncode(make([]byte, 0, wire.ResponseLen), &wire.Response{SessionID: ch.SessionID, Seq: ka.Seq + 9, Cookie: ch.Cookie})
				atk.Write(r)
				sent, bytes = sent+1, bytes+len(r)
			}
		}
	}
	took := time.Since(start)
	s.mark()
	end := s.sched.Current(truth()) + 3
	victim, control := s.judged(t, first, end)
	ss := s.edge.Server.Stats().Sessions
	s.end(t)
	result(t, "%d KEEPALIVEs/RESPONSEs (%d B) with an observed session id over %v; victim %d of %d periods missed, %d early (control %d, %d); edge: %d forged, %d challenges (%d reached the attacker), %d moved; %s",
		sent, bytes, took.Round(time.Millisecond), victim.missing, end-first, victim.early, control.missing, control.early, ss.Forged, ss.Challenges, challenges, ss.Moved, s.costs(took))
	s.check(t, victim, control)
	if ss.Moved != 0 || ss.Forged < 6 {
		t.Errorf("edge sessions %+v: want nothing moved and every forged MAC counted", ss)
	}
}

// sesTokenFlood: with tokens required, an attacker completes real
// handshakes from its own address — a valid cookie each time — with no
// token or a forged one, as fast as the edge answers: nothing subscribes,
// and the two genuine receivers, holding tokens, lose nothing.
func sesTokenFlood(t *testing.T) {
	signer := ed25519.NewKeyFromSeed(make([]byte, 32))
	mod := func(c *unicast.SessionConfig) { c.Tokens = seal.NewKeyRing(signer.Public().(ed25519.PublicKey)) }
	tok := seal.SignToken(signer, &wire.Token{NotAfter: truth() + int64(10*time.Minute)})
	s := newSesLab(t, mod, tok)
	first := s.ready(t)
	atk := s.attacker(t)
	forged := append([]byte(nil), tok...)
	forged[wire.TokenLen-1] ^= 1
	share, err := seal.NewKeyShare(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	before := s.edge.Server.Stats().Sessions
	s.mark()
	start := time.Now()
	sent, in, subscribes := 0, 0, 0
	buf := make([]byte, wire.MaxDatagram)
	out := make([]byte, 0, wire.MaxDatagram)
	for time.Since(start) < sesAttack {
		cookie, _ := atkCookie(t, atk)
		for range 64 {
			m := &wire.Subscribe{Cookie: cookie, KeyShare: [wire.KeyShareLen]byte(share.PublicKey().Bytes()), Streams: []uint32{stream}, CatchUp: wire.MaxCatchUp}
			if subscribes%2 == 1 {
				m.Token = forged
			}
			d := atkEncode(out, m)
			atk.Write(d)
			sent, subscribes = sent+1, subscribes+1
			atk.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := atk.Read(buf); err == nil {
				in += n
			}
			if ahead := time.Duration(float64(sent)/sesRate*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	took := time.Since(start)
	s.mark()
	end := s.sched.Current(truth()) + 3
	victim, control := s.judged(t, first, end)
	ss := s.edge.Server.Stats().Sessions
	refusedTok := ss.Refused[wire.ReasonToken] - before.Refused[wire.ReasonToken]
	s.end(t)
	result(t, "%d unauthenticated SUBSCRIBEs with valid cookies at %.0f/s for %v; %d subscribed, %d refused for the token, %d busy; answers %d B (amplification %.2f); receivers %d of %d periods missed, %d early (control %d, %d); %s",
		subscribes, float64(subscribes)/took.Seconds(), took.Round(time.Millisecond), ss.Subscribers-2, refusedTok, ss.Refused[wire.ReasonBusy], in,
		float64(in)/float64(subscribes*(wire.SubscribeMinLen)), victim.missing, end-first, victim.early, control.missing, control.early, s.costs(took))
	s.check(t, victim, control)
	if ss.Subscribers != 2 || refusedTok+ss.Refused[wire.ReasonBusy] < uint64(subscribes)*9/10 {
		t.Errorf("edge sessions %+v: want only the two genuine subscribers, the flood refused", ss)
	}
}
