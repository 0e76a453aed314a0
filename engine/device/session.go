package device

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/embargo-live/embargo/engine/session"
	"github.com/embargo-live/embargo/engine/udp"
	"github.com/embargo-live/embargo/internal/fetch"
)

// configured is what a session description (and the licence) set.
type configured struct {
	pub     ed25519.PublicKey
	master  []byte
	streams []uint32
	groups  []udp.Group
	edges   []netip.AddrPort
	// subToken is the subscription token the licence carried (nil
	// without); relicence fetches the licence again for a fresh one.
	subToken  []byte
	relicence func(context.Context) ([]byte, error)
	// licences are the replicas the licence is asked of (nil without a
	// token); sessions those the session came from.
	sessions, licences *fetch.Origins
}

// fromSession reads cfg.Session and, with a token, the master key of the
// one stream chosen.
func fromSession(ctx context.Context, cfg Config) (*configured, error) {
	client := cfg.HTTPClient
	if client == nil {
		t := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cfg.RootCAs}}
		defer t.CloseIdleConnections()
		client = &http.Client{Transport: t, Timeout: 30 * time.Second}
	}
	urls := strings.Split(cfg.Session, ",")
	for i := range urls {
		urls[i] = strings.TrimSpace(urls[i])
	}
	sessions := fetch.NewOrigins(urls...)
	s, err := session.FetchFrom(ctx, client, sessions, "")
	if err != nil {
		return nil, err
	}
	c := &configured{sessions: sessions}
	if c.pub, err = s.PublicKey(); err != nil {
		return nil, err
	}
	if c.streams, err = chooseStreams(s.Streams, cfg.Streams, cfg.Token != ""); err != nil {
		return nil, err
	}
	for _, g := range s.Groups {
		x, err := udp.ParseGroup(g)
		if err != nil {
			return nil, fmt.Errorf("session group: %w", err)
		}
		c.groups = append(c.groups, x)
	}
	for _, e := range s.Edges {
		x, err := netip.ParseAddrPort(e)
		if err != nil {
			return nil, fmt.Errorf("session edge: %w", err)
		}
		c.edges = append(c.edges, x)
	}
	if cfg.Token != "" {
		licences, path := s.LicenceReplicas(c.streams[0], urls, sessions.Current())
		c.licences = licences
		if c.master, c.subToken, err = session.FetchLicenceFrom(ctx, client, licences, path, cfg.Token); err != nil {
			return nil, fmt.Errorf("licence: %w", err)
		}
		c.relicence = func(ctx context.Context) ([]byte, error) {
			_, tok, err := session.FetchLicenceFrom(ctx, client, licences, path, cfg.Token)
			return tok, err
		}
	}
	return c, nil
}

// chooseStreams picks the streams a device configured from a session receives:
// those asked for (each must be among those offered), or, when none are
// asked for, those offered. Each stream has its own master key and a
// receiver holds one, so with a licence it takes exactly one stream.
func chooseStreams(offered, asked []uint32, licence bool) ([]uint32, error) {
	chosen := offered
	if len(asked) > 0 {
		for _, s := range asked {
			if !slices.Contains(offered, s) {
				return nil, fmt.Errorf("stream %d is not in the session (it offers %v)", s, offered)
			}
		}
		chosen = asked
	}
	switch {
	case len(chosen) == 0:
		return nil, errors.New("the session offers no streams")
	case licence && len(chosen) > 1:
		return nil, fmt.Errorf("the session offers streams %v, each with its own master key: pick one", chosen)
	}
	return chosen, nil
}
