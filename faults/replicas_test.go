//go:build linux

package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embargo-live/embargo/engine/bundle"
	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/etcdstore"
	"github.com/embargo-live/embargo/engine/poller"
	"github.com/embargo-live/embargo/internal/etcdtest"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/internal/netns"
	"github.com/embargo-live/embargo/internal/pki"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/wait"
	"github.com/embargo-live/embargo/seal"
)

// TestOriginReplicas: three origin replicas share their issuing state
// through a three-member etcd cluster, one replica and one member in each
// of three namespaces; three edges poll the replicas (all using the
// first), and receivers take the group. Mid-event the replica the edges
// use dies, later the etcd leader. Every receiver still delivers every
// period, none early, with the keys etcd holds; every edge got each
// period's one bundle whichever replica it came from, and the surviving
// replicas serve the same: no period was ever issued twice with
// different keys. The RESULT line gives the edges' failover times and
// how long the cluster refused reads after its leader's loss.
func TestOriginReplicas(t *testing.T) {
	realtime.Exclusive(t)
	const (
		period      = 500 * time.Millisecond
		lead        = 4 * time.Second // covers an etcd election (~1–2 s) with room to carousel
		end         = 44
		killReplica = 16 // replica 0 dies half a period before this period's release
		killLeader  = 30 // the etcd leader dies half a period before this one's
		replicas    = 3
		recvHosts   = 2
		port        = 8443
	)
	// Hosts: 1–3 edges, then the replicas (each with an etcd member), then
	// receivers.
	l := newLab(t, replicas+recvHosts, period, lead, 6*time.Second)
	if _, err := etcdtest.Binary(); err != nil {
		t.Skip(err)
	}
	replicaHost := func(i int) *netns.Host { return l.net.Host(firstRecv + i) }
	var members []etcdtest.Member
	var urls []string
	for i := range replicas {
		h := replicaHost(i)
		members = append(members, etcdtest.Member{Client: h.IPv4.String() + ":2379", Peer: h.IPv4.String() + ":2380", Wrap: []string{"ip", "netns", "exec", h.Name}})
		urls = append(urls, fmt.Sprintf("https://%s:%d", h.IPv4, port))
	}
	cluster := etcdtest.StartMembers(t, members, grpcDialIn(replicaHost(replicas-1)))

	ca, err := pki.NewCA("replicas CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for i := range replicas {
		ips = append(ips, replicaHost(i).IPv4.String())
	}
	srvCert, err := ca.Server("origin", ips, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	edgeCert, err := ca.Client("edge", pki.RoleEdge, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert.Cert)

	reps := make([]*originReplica, replicas)
	for i := range reps {
		reps[i] = l.startReplica(replicaHost(i), cluster.Endpoints, srvCert, pool, port)
	}
	// The lab's receivers and edges trust what the replicas share.
	master := make([]byte, seal.MasterKeyLen)
	copy(master, l.master)
	for i, r := range reps {
		err := r.issuer.AddEvent(&keystore.Event{Stream: stream, Master: master, Keys: 2, Schedule: l.sched})
		if i == 0 && err != nil || i > 0 && !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("replica %d: AddEvent: %v", i, err)
		}
		if !bytes.Equal(r.issuer.Event(stream).Master, master) || !r.issuer.PublicKey().Equal(reps[0].issuer.PublicKey()) {
			t.Fatalf("replica %d issues with another master or signing key", i)
		}
		r.run()
	}
	l.ring = seal.NewKeyRing(reps[0].issuer.PublicKey())

	// Edges poll the replicas, the first first.
	type edgePoll struct {
		p   *poller.Poller
		got map[uint64][32]byte // period → digest of the bundle handed
		mu  sync.Mutex
	}
	polls := make([]*edgePoll, edgeHosts)
	for i := range polls {
		re := l.startEdge(i, edgeOpts{})
		h := l.edgeHost(i)
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			TLSClientConfig: poller.ClientTLS(edgeCert.TLS(), pool), DialContext: atkDialer(h)}}
		ep := &edgePoll{got: map[uint64][32]byte{}}
		ep.p = &poller.Poller{Origins: fetch.NewOrigins(urls...), Streams: []uint32{stream}, Client: client, Key: edgeCert.Key,
			Interval: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
		polls[i] = ep
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			ep.p.Run(ctx, func(b *bundle.Bundle) error {
				ep.mu.Lock()
				ep.got[b.Period] = digest(b)
				ep.mu.Unlock()
				return re.Add(b)
			})
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	var recs []*recorder
	for i := range 2 * recvHosts {
		recs = append(recs, l.startReceiver(l.multicast(l.net.Host(firstRecv+replicas+i%recvHosts))))
	}
	// Judged: the periods released from a second after everything is up.
	first := l.newestReleased(truth()+int64(time.Second)) + 1
	ps := periods(uint64(first), end)
	at := func(n uint64) int64 { return l.sched.At(n).ReleaseAt }

	// Kill the replica every edge uses.
	untilTrue(at(killReplica) - int64(period/2))
	reps[0].stop()
	killedAt := time.Now()
	var failovers []time.Duration
	wait.For(t, 10*time.Second, "every edge to fetch from another replica", func() bool {
		for _, ep := range polls {
			if st := ep.p.Stats(); st.Failovers == 0 || !st.LastFetch.After(killedAt) {
				return false
			}
		}
		return true
	})
	for _, ep := range polls {
		failovers = append(failovers, ep.p.Stats().LastFetch.Sub(killedAt))
	}

	// Kill the etcd leader; measure how long a replica's reads fail.
	untilTrue(at(killLeader) - int64(period/2))
	leader, err := cluster.Leader()
	if err != nil {
		t.Fatal(err)
	}
	probe := uint64(killReplica) // stored long ago: a read of it only needs the cluster
	cluster.Stop(leader)
	leaderAt := time.Now()
	var blocked []time.Duration
	var bmu sync.Mutex
	var pwg sync.WaitGroup
	for _, r := range reps[1:] {
		pwg.Go(func() {
			for time.Since(leaderAt) < 20*time.Second {
				if _, err := r.store.Period(stream, probe); err == nil {
					bmu.Lock()
					blocked = append(blocked, time.Since(leaderAt))
					bmu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	pwg.Wait()

	last := l.sched.At(end - 1)
	untilTrue(last.ReleaseAt)
	wait.For(t, time.Duration(last.PresentAt-truth())+stragglers, "every receiver has the last period", func() bool {
		return delivered(recs, []uint64{end - 1})
	})

	// Every answer about every judged period: what each edge was handed
	// (from whichever replica) and what each surviving replica serves.
	conflicts := 0
	for _, n := range ps {
		var answers [][32]byte
		for i, r := range reps[1:] {
			p, err := r.issuer.Period(stream, n)
			if err != nil {
				t.Errorf("replica %d, period %d: %v", i+1, n, err)
				continue
			}
			answers = append(answers, digest(p.Bundle))
			if i == 0 {
				l.mu.Lock()
				l.keys[n] = p.Keys
				l.mu.Unlock()
			} else if !slices.Equal(p.Keys, l.keysOf(n)) {
				conflicts++
				t.Errorf("period %d: replicas 1 and %d serve different keys", n, i+1)
			}
		}
		for i, ep := range polls {
			ep.mu.Lock()
			d, ok := ep.got[n]
			ep.mu.Unlock()
			if !ok {
				t.Errorf("edge %d was never handed period %d", i, n)
				continue
			}
			answers = append(answers, d)
		}
		for _, d := range answers[1:] {
			if d != answers[0] {
				conflicts++
				t.Errorf("period %d: two different bundles answered", n)
				break
			}
		}
	}
	v := l.judge(recs, ps)
	if !v.ok() || conflicts > 0 {
		t.Errorf("receivers: %+v; conflicting answers: %d", v, conflicts)
	}
	var issued []string
	for i, r := range reps {
		issued = append(issued, fmt.Sprintf("r%d=%d", i, r.issuer.Issued()))
	}
	result(t, "%d origin replicas on a %d-member etcd cluster, %d edges, %d receivers, periods %d–%d; "+
		"replica r0 (every edge's) killed %v before period %d's release, etcd leader m%d killed %v before period %d's; "+
		"missing %d, early %d, late %d, wrong keys %d, conflicting issuances %d; "+
		"edge failover: median %v (%v); replica reads blocked after the leader's loss: median %v (%v); periods issued %s",
		replicas, replicas, edgeHosts, len(recs), first, end-1,
		period/2, killReplica, leader, period/2, killLeader,
		v.missing, v.early, v.late, v.wrongKeys, conflicts,
		median(failovers).Round(time.Millisecond), roundAll(failovers), median(blocked).Round(time.Millisecond), roundAll(blocked), strings.Join(issued, " "))
}

// originReplica is one origin replica running in a namespace: an issuer
// on the shared etcd store behind the origin's HTTPS handler.
type originReplica struct {
	store  *etcdstore.Store
	issuer *keyserver.Issuer
	srv    *http.Server
	ln     net.Listener
	run    func()
	stop   func()
}

// startReplica opens the store from h and listens on h's address; run
// starts issuing and serving, stop kills it all (listener, connections,
// issuer, store client), as a crash would.
func (l *lab) startReplica(h *netns.Host, endpoints []string, cert *pki.Cert, pool *x509.CertPool, port int) *originReplica {
	l.t.Helper()
	store, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints, Dial: grpcDialIn(h), Timeout: 2 * time.Second})
	if err != nil {
		l.t.Fatal(err)
	}
	issuer, err := keyserver.NewIssuer(store, offsetClock(0, time.Microsecond), nil)
	if err != nil {
		l.t.Fatal(err)
	}
	r := &originReplica{store: store, issuer: issuer}
	if err := h.Do(func() (err error) {
		r.ln, err = net.Listen("tcp", netip.AddrPortFrom(h.IPv4, uint16(port)).String())
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	r.srv = &http.Server{Handler: keyserver.NewHandler(keyserver.ServerConfig{Issuer: issuer}), TLSConfig: keyserver.ServerTLS(cert.TLS(), pool)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	r.run = func() {
		wg.Go(func() { issuer.Run(ctx, 100*time.Millisecond) })
		wg.Go(func() { r.srv.ServeTLS(r.ln, "", "") })
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			r.srv.Close()
			r.ln.Close()
			wg.Wait()
			store.Close()
		})
	}
	l.t.Cleanup(r.stop)
	return r
}

// grpcDialIn is atkDialer for the etcd client.
func grpcDialIn(h *netns.Host) func(ctx context.Context, addr string) (net.Conn, error) {
	d := atkDialer(h)
	return func(ctx context.Context, addr string) (net.Conn, error) { return d(ctx, "tcp", addr) }
}

// digest identifies a bundle: its RK and every ANNOUNCE shard.
func digest(b *bundle.Bundle) [32]byte {
	h := sha256.New()
	h.Write(b.RK[:])
	for _, s := range b.Shards {
		h.Write(s)
	}
	return [32]byte(h.Sum(nil))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
