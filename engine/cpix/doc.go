// Package cpix carries key material out of the origin as DASH-IF CPIX 2.4
// documents, valid against the official CPIX 2.4 and 2.3.1 schemas (kept
// in testdata/xsd and checked by the tests with xmllint): release bundles to edges (EncodeBundles, DecodeBundles) and
// rotating content keys to a packager (EncodePackagerKeys,
// DecodePackagerKeys). CPIX is what key servers and packagers already
// speak, so an edge's ingest and an off-the-shelf packager read the same
// format, and the secrets in it are encrypted to one recipient's RSA
// certificate rather than trusted to the transport alone.
//
// # Encryption
//
// Each document draws a fresh 32-byte Document Key and a 64-byte MAC key,
// and wraps both to the recipient certificate's RSA key (≥ 2048 bits) with
// xmlenc's rsa-oaep-mgf1p (OAEP, SHA-1 digest and MGF1, no label): the
// Document Key in DeliveryData/DocumentKey/Data/pskc:Secret/
// pskc:EncryptedValue (DocumentKey names no Algorithm: CPIX 2.4's schema
// refuses one) and the MAC key in DeliveryData/MACMethod/pskc:MACKey, as
// CPIX §"Authenticated Encryption" and RFC 6030 have it. Decoders also
// read the MAC key as cpix:Key (DASH-IF test vectors, SPEKE's reference
// server) and a DocumentKey@Algorithm naming AES-256-CBC (CPIX 2.3).
// Every value — an RK, a content key — is IV(16) ‖ AES-256-CBC(Document
// Key, PKCS#7(value)) in ContentKey/Data/pskc:Secret/pskc:EncryptedValue,
// with pskc:ValueMAC = HMAC-SHA512(MAC key, IV ‖ ciphertext). Decoders
// check every MAC in constant time before decrypting anything, refuse
// values in the clear and any algorithm URI but these four, and return
// everything or nothing.
//
// The encryption makes a document confidential to its recipient; it does
// not say who made it (anyone can encrypt to a certificate). Bundles are
// authenticated by the origin's signatures, which bundle.Open checks, and
// by the transport (mutual TLS).
//
// # Edge bundles
//
// One key period of one stream is one ContentKey, one ContentKeyPeriod and
// one ContentKeyUsageRule, and no DRMSystem (an edge document carries no
// DRM signaling, so it names no unregistered system id):
//
//   - ContentKey@kid = BundleKID(stream, period): SHA-256("embargo/v1 cpix
//     kid\0" ‖ stream(4) ‖ period(8))[0:16] with UUID version 8 and the
//     RFC 4122 variant; its encrypted value is RK (32 bytes, so 64 bytes of
//     IV and ciphertext). No commonEncryptionScheme: RK is not a media key.
//   - ContentKeyPeriod@id = "s<stream>-p<period>" (decimal), @index =
//     the period, @start =
//     releaseAt and @end = presentAt as UTC xs:dateTime, converted with a
//     fixed TAI − UTC offset (37 s by default). These are informational
//     and never read back: a fixed offset is a second off around a leap
//     second, and an instant must survive the trip to the nanosecond.
//   - ContentKeyUsageRule@kid with one KeyPeriodFilter@periodId naming
//     that period, then one extension element in namespace Namespace
//     (prefix emb), where the schema admits other namespaces
//     (processContents lax: a reader that does not know it skips it).
//
// The extension element carries everything of the bundle but RK:
//
//	<emb:Bundle stream="7" period="42" releaseAt="…" presentAt="…">
//	  <emb:Announce>base64 datagram</emb:Announce>  (k+m times, in order)
//	  <emb:MAC>base64 HMAC-SHA512</emb:MAC>
//	</emb:Bundle>
//
// The attributes are canonical decimal integers, releaseAt and presentAt
// exact TAI ns; each Announce is one encoded ANNOUNCE datagram of
// bundle.Bundle.Shards. The MAC, under the document's MAC key, is over
// "embargo/v1 cpix bundle\0" ‖ kid(16) ‖ stream(4) ‖ period(8) ‖
// releaseAt(8) ‖ presentAt(8) ‖ len(2) ‖ the RK CipherValue ‖ count(2) ‖
// for each datagram len(2) ‖ datagram, integers big-endian. CPIX's
// ValueMAC covers only the encrypted RK, not the kid it sits under; this
// MAC binds the RK, the period's identity, its instants and its datagrams
// together.
//
// ContentProtectionData was not used for the payload: CPIX defines it as
// an XML element for a DASH manifest, and a packager would paste it there.
//
// # Packager keys
//
// Each content key is a ContentKey (kid the CENC KID,
// commonEncryptionScheme cenc unless WithScheme says otherwise) with a
// usage rule naming its period's ContentKeyPeriod ("s<stream>-p<period>",
// index the period, start and end the media span in UTC to the
// nanosecond), so a packager encrypts each period's media with its keys.
// CPIX lets a document match at most one key to a content key context, so
// a period has one key for every track, or two: the first with a
// VideoFilter (intendedTrackType VIDEO), the second with an AudioFilter
// (AUDIO). Each rule ends with <emb:Release releaseAt="TAI ns" utc="…"/>:
// when the key reaches viewers, which a packager needs to know how far
// ahead it may publish what the key encrypts. Decoders refuse two keys
// matching one context, in both kinds of document.
//
// # Input limits
//
// Decoders refuse documents over the size limit (16 MiB by default) before
// parsing, DTDs of any kind, more than one root, nesting deeper than 32,
// more elements than the period limit (1024 by default) can account for,
// more than 16 recipients, more than wire.MaxShards datagrams or
// wire.MaxContentKeys keys per period. Encoders refuse to write what their
// decoder would refuse.
package cpix
