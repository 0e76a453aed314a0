package bundle

import (
	"crypto/ed25519"
	"fmt"

	"github.com/embargo-live/embargo/fec"
	"github.com/embargo-live/embargo/seal"
	"github.com/embargo-live/embargo/wire"
)

// Shard splits an ANNOUNCE body into the Reed–Solomon shard set of the
// default geometry for maxDatagram (PROTOCOL.md §7.1), signs its Merkle
// root with signer, and returns the k+m encoded ANNOUNCE datagrams in index
// order. It is the origin's half of a bundle; the body's own stream and
// period name the datagrams.
func Shard(signer ed25519.PrivateKey, body []byte, maxDatagram int) ([][]byte, error) {
	var b wire.Body
	if err := b.Decode(body); err != nil {
		return nil, fmt.Errorf("bundle: shard: %w", err)
	}
	g, err := fec.ChooseGeometry(len(body), maxDatagram, fec.DefaultParityPercent, fec.DefaultMinParity)
	if err != nil {
		return nil, fmt.Errorf("bundle: shard: %w", err)
	}
	set, err := fec.Encode(body, g)
	if err != nil {
		return nil, fmt.Errorf("bundle: shard: %w", err)
	}
	signed := wire.Shard{Header: wire.Header{Stream: b.Stream, Period: b.Period}}
	set.Fill(&signed, 0)
	if err := seal.SignShardRoot(signer, &signed); err != nil {
		return nil, fmt.Errorf("bundle: shard: %w", err)
	}
	return datagrams(set, &signed)
}

// encode re-creates the datagrams of body in geometry g with the stream,
// period, key id and root signature of signed.
func encode(body []byte, g fec.Geometry, signed *wire.Shard) ([][]byte, error) {
	set, err := fec.Encode(body, g)
	if err != nil {
		return nil, err
	}
	return datagrams(set, signed)
}

func datagrams(set *fec.Set, signed *wire.Shard) ([][]byte, error) {
	s := wire.Shard{Header: wire.Header{Stream: signed.Stream, Period: signed.Period}, KeyID: signed.KeyID, Sig: signed.Sig}
	out := make([][]byte, len(set.Shards))
	for i := range out {
		set.Fill(&s, i)
		out[i] = make([]byte, s.Len())
		if _, err := s.Encode(out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
