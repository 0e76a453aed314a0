package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/embargo-live/embargo/engine/keystore"
	"github.com/embargo-live/embargo/engine/keystore/etcdstore"
	"github.com/embargo-live/embargo/internal/keyfile"
	"github.com/embargo-live/embargo/internal/pki"
)

// storeFlags say where the origin keeps what it issues: its own state
// directory (the default), or an etcd cluster shared by replicas.
type storeFlags struct {
	store, ca, cert, key, prefix *string
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	return storeFlags{
		store:  fs.String("store", "", "where issued state lives: empty for the -state directory (one process), or etcd:URL,URL,… for replicas sharing an etcd cluster (every period issued once, by whichever replica is first; all serve the same keys)"),
		ca:     fs.String("etcd-ca", "", "with -store etcd: the CA file that signed the etcd members' certificates"),
		cert:   fs.String("etcd-cert", "", "with -store etcd: this origin's client certificate file for etcd"),
		key:    fs.String("etcd-key", "", "with -store etcd: its private key file (mode 0600)"),
		prefix: fs.String("etcd-prefix", etcdstore.DefaultPrefix, "with -store etcd: the key prefix the replicas share; another prefix is another origin"),
	}
}

// shared reports whether the store is shared by replicas.
func (f storeFlags) shared() bool { return *f.store != "" }

// open opens the store, or the state directory dir when -store is empty.
// The returned close releases it.
func (f storeFlags) open(dir string) (keystore.State, func(), error) {
	if *f.store == "" {
		s, err := keystore.Open(dir)
		return s, func() {}, err
	}
	urls, ok := strings.CutPrefix(*f.store, "etcd:")
	if !ok || urls == "" {
		return nil, nil, usageError{fmt.Sprintf("-store %q: want etcd:https://host:2379,https://host:2379 (or nothing, for the -state directory)", *f.store)}
	}
	cfg := etcdstore.Config{Endpoints: list(urls), Prefix: *f.prefix}
	https, plain := false, false
	for _, u := range cfg.Endpoints {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return nil, nil, usageError{fmt.Sprintf("-store: etcd endpoint %q: want https://host:port", u)}
		}
		https = https || strings.HasPrefix(u, "https://")
		plain = plain || strings.HasPrefix(u, "http://")
	}
	if https && plain {
		// One client speaks TLS to every member or to none.
		return nil, nil, usageError{"-store mixes https:// and http:// etcd endpoints: give every member as https://"}
	}
	if https {
		t, err := f.tls()
		if err != nil {
			return nil, nil, err
		}
		cfg.TLS = t
	}
	s, err := etcdstore.Open(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("-store: %w", err)
	}
	return s, func() { s.Close() }, nil
}

// tls is the client side of mutual TLS with etcd: the cluster holds every
// key, so the origin proves who it is and checks whom it talks to.
func (f storeFlags) tls() (*tls.Config, error) {
	if *f.ca == "" || *f.cert == "" || *f.key == "" {
		return nil, usageError{"-store with https:// endpoints needs -etcd-ca, -etcd-cert and -etcd-key: etcd holds every key the origin issues"}
	}
	pool, err := pki.LoadPool(*f.ca)
	if err != nil {
		return nil, fmt.Errorf("-etcd-ca: %w", err)
	}
	certPEM, err := os.ReadFile(*f.cert)
	if err != nil {
		return nil, fmt.Errorf("-etcd-cert: %w", err)
	}
	keyPEM, err := keyfile.Read(*f.key)
	if err != nil {
		return nil, fmt.Errorf("-etcd-key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("-etcd-cert/-etcd-key %s, %s: %w", *f.cert, *f.key, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
