// Package origin makes the release bundles edges need: for each stream and
// key period it takes content keys (or an opaque resource), wraps the keys
// under the event's master key, seals the payload under a fresh release
// secret, commits to the secret, signs, and shards the ANNOUNCE. A Schedule
// says when periods are released, presented and announced, and a Rotation
// issues bundles on it.
//
// The origin service with CPIX export and licences builds on this package.
package origin
