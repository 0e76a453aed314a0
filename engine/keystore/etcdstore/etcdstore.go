// Package etcdstore keeps an origin's state (keystore.State) in an etcd
// cluster, so that several origin replicas issue as one: each write is an
// etcd transaction that creates the key only if it is absent and otherwise
// returns the value that stands, so whichever replica issues a period
// first decides its keys, and every replica reads back and serves that
// period. The cluster holds the signing key and every master and content
// key: reach it over TLS with a client certificate, and let nothing else
// read it.
package etcdstore

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/embargo-live/embargo/engine/keystore"
)

// DefaultPrefix is where an origin's keys live in the cluster unless
// Config.Prefix says otherwise.
const DefaultPrefix = "/embargo/"

// DefaultTimeout bounds each operation: long enough to ride out an etcd
// leader election (about a second with etcd's defaults), short enough for
// the issuer's next tick to try again well within an announce lead.
const DefaultTimeout = 5 * time.Second

// Config says how to reach the cluster.
type Config struct {
	Endpoints []string    // client URLs, e.g. https://10.0.0.1:2379
	TLS       *tls.Config // nil for http:// endpoints (a lab only)
	Prefix    string      // key prefix; DefaultPrefix if empty
	Timeout   time.Duration
	// Dial, if set, connects to a member's address (host:port); the fault
	// suite dials from inside a network namespace.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Store is a keystore.State in etcd. It is safe for concurrent use, and
// any number of processes may share one cluster and prefix.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
}

var _ keystore.State = (*Store)(nil)

// Open connects to the cluster and checks that it answers.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no endpoints; give the cluster's client URLs")
	}
	s := &Store{prefix: cfg.Prefix, timeout: cfg.Timeout}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	cc := clientv3.Config{Endpoints: cfg.Endpoints, TLS: cfg.TLS, DialTimeout: s.timeout, Logger: zap.NewNop()}
	if cfg.Dial != nil {
		cc.DialOptions = []grpc.DialOption{grpc.WithContextDialer(cfg.Dial)}
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %v: %w", cfg.Endpoints, err)
	}
	s.cli = cli
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.prefix+"signing-key", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcdstore: %v does not answer: %w; check the endpoints and TLS files", cfg.Endpoints, err)
	}
	return s, nil
}

// Close ends the connection to the cluster.
func (s *Store) Close() error { return s.cli.Close() }

func (s *Store) eventKey(stream uint32) string {
	return fmt.Sprintf("%sevents/%010d", s.prefix, stream)
}

// periodKey pads numbers so that the keys' byte order is the periods'.
func (s *Store) periodKey(stream uint32, period uint64) string {
	return fmt.Sprintf("%speriods/%010d/%020d", s.prefix, stream, period)
}

// create stores data under key unless the key exists, in one transaction;
// it returns the value that stands and whether it is data.
func (s *Store) create(key string, data []byte) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return nil, false, fmt.Errorf("etcdstore: create %s: %w", key, err)
	}
	if resp.Succeeded {
		return data, true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) != 1 {
		return nil, false, fmt.Errorf("%w: %s exists but reads back empty", keystore.ErrCorrupt, key)
	}
	return kvs[0].Value, false, nil
}

func (s *Store) get(key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: etcd %s", keystore.ErrNotFound, key)
	}
	return resp.Kvs[0].Value, nil
}

// keys lists the keys from `from` up to the end of prefix, in byte order,
// without their values.
func (s *Store) keys(from, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: list %s: %w", prefix, err)
	}
	out := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = string(kv.Key)
	}
	return out, nil
}

// SigningKey returns the replicas' one signing key, storing a new one if
// the cluster has none yet.
func (s *Store) SigningKey() (ed25519.PrivateKey, error) {
	key := s.prefix + "signing-key"
	data, err := s.get(key)
	if errors.Is(err, keystore.ErrNotFound) {
		_, fresh, gerr := keystore.NewSigningKey()
		if gerr != nil {
			return nil, gerr
		}
		data, _, err = s.create(key, fresh)
	}
	if err != nil {
		return nil, err
	}
	return keystore.ParseSigningKey(data, "etcd "+key)
}

func (s *Store) CreateEvent(ev *keystore.Event) error {
	data, err := keystore.MarshalEvent(ev)
	if err != nil {
		return err
	}
	key := s.eventKey(ev.Stream)
	_, created, err := s.create(key, data)
	if err == nil && !created {
		err = fmt.Errorf("%w: etcd %s", keystore.ErrExists, key)
	}
	return err
}

func (s *Store) Event(stream uint32) (*keystore.Event, error) {
	key := s.eventKey(stream)
	data, err := s.get(key)
	if err != nil {
		return nil, err
	}
	return keystore.ParseEvent(stream, data, "etcd "+key)
}

func (s *Store) Events() ([]uint32, error) {
	prefix := s.prefix + "events/"
	keys, err := s.keys(prefix, prefix)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, k := range keys {
		if n, err := strconv.ParseUint(strings.TrimPrefix(k, prefix), 10, 32); err == nil {
			out = append(out, uint32(n))
		}
	}
	return out, nil
}

func (s *Store) PutPeriod(p *keystore.Period) error {
	data, err := keystore.MarshalPeriod(p)
	if err != nil {
		return err
	}
	key := s.periodKey(p.Bundle.Stream, p.Bundle.Period)
	_, created, err := s.create(key, data)
	if err == nil && !created {
		err = fmt.Errorf("%w: etcd %s", keystore.ErrExists, key)
	}
	return err
}

func (s *Store) Period(stream uint32, period uint64) (*keystore.Period, error) {
	key := s.periodKey(stream, period)
	data, err := s.get(key)
	if err != nil {
		return nil, err
	}
	return keystore.ParsePeriod(stream, period, data, "etcd "+key)
}

func (s *Store) Periods(stream uint32, from uint64) ([]uint64, error) {
	prefix := fmt.Sprintf("%speriods/%010d/", s.prefix, stream)
	keys, err := s.keys(s.periodKey(stream, from), prefix)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, k := range keys {
		if n, err := strconv.ParseUint(strings.TrimPrefix(k, prefix), 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}
