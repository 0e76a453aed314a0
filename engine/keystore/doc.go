// Package keystore is the origin's durable state: its signing key, each
// event's master key and schedule, and every period it has issued — the
// content keys, the release secret and the signed ANNOUNCE — so that a
// restart never changes a key already handed out and never loses one.
//
// State is the seam: Store keeps it in one process's directory, and
// package etcdstore in an etcd cluster shared by origin replicas; every
// write to either creates or refuses, never replaces.
//
// Store keeps everything in one directory readable by its owner only; every
// file is written to a temporary name, synced and hard-linked into place, so a
// crash leaves either the old file or the new one, never half of one. A
// period, once stored, is never overwritten.
package keystore
