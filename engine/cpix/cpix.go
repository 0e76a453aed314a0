package cpix

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/embargo-live/embargo/ptp"
)

// Every error the package returns wraps exactly one of these.
var (
	// ErrMalformed: not XML, a DTD, or XML that is not a CPIX document of
	// the shape this package writes (a missing element, a bad number, a key
	// in the clear, a value of the wrong length, a dangling reference).
	ErrMalformed = errors.New("cpix: malformed document")
	// ErrUnsupported: an algorithm URI other than the ones CPIX mandates, or
	// a recipient key this package does not encrypt to.
	ErrUnsupported = errors.New("cpix: unsupported algorithm or key")
	// ErrMAC: an integrity check failed: a ValueMAC, the MAC over embargo's
	// extension element, or a wrapped key whose RSA-OAEP decoding fails.
	ErrMAC = errors.New("cpix: integrity check failed")
	// ErrRecipient: no DeliveryData names the certificate of the private
	// key given: the document was made for someone else.
	ErrRecipient = errors.New("cpix: document is not for this key")
	// ErrTooLarge: the document, or one of its lists, is over a limit.
	ErrTooLarge = errors.New("cpix: document too large")
	// ErrInvalid: an encoder was given something it cannot encode, or an
	// option out of range.
	ErrInvalid = errors.New("cpix: invalid input")
)

// Namespace is the XML namespace of embargo's extension elements, which
// sit last in a ContentKeyUsageRule (prefix "emb"); CPIX readers that do
// not know it skip them (the schema admits them with processContents
// lax).
const Namespace = "https://github.com/embargo-live/embargo/ns/cpix/v1"

// Version is the CPIX@version written. Documents are valid against both
// the CPIX 2.4 and 2.3.1 schemas (testdata/xsd).
const Version = "2.4"

// Track is a key's content key context within its period: CPIX requires
// that no two keys match one context, so the keys of a period split the
// tracks between them with usage rule filters.
type Track uint8

const (
	// TrackAll: the period's one key encrypts every track (no filter).
	TrackAll Track = iota
	// TrackVideo: video tracks (a VideoFilter, intendedTrackType VIDEO).
	TrackVideo
	// TrackAudio: audio tracks (an AudioFilter, intendedTrackType AUDIO).
	TrackAudio
)

// MaxTrackKeys is the most keys a period can have in a packager document:
// one for video and one for audio.
const MaxTrackKeys = 2

// TrackOf is the context of key i of a period with n keys: one key takes
// every track; of two, the first takes video and the second audio.
func TrackOf(i, n int) Track {
	if n == 1 {
		return TrackAll
	}
	return TrackVideo + Track(i)
}

// String is the track's intendedTrackType.
func (t Track) String() string {
	switch t {
	case TrackVideo:
		return "VIDEO"
	case TrackAudio:
		return "AUDIO"
	}
	return "ALL"
}

// Limits.
const (
	// DefaultMaxSize is the largest document decoded by default.
	DefaultMaxSize = 16 << 20
	// DefaultMaxPeriods is the most key periods one document carries by
	// default.
	DefaultMaxPeriods = 1024
	// maxRecipients bounds DeliveryData elements: each costs an RSA
	// certificate parse.
	maxRecipients = 16
	// maxDepth bounds element nesting; the deepest CPIX path is 8.
	maxDepth = 32
)

const (
	nsCPIX = "urn:dashif:org:cpix"
	nsDS   = "http://www.w3.org/2000/09/xmldsig#"
	nsEnc  = "http://www.w3.org/2001/04/xmlenc#"
	nsPSKC = "urn:ietf:params:xml:ns:keyprov:pskc"

	algAES256CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
	algRSAOAEP   = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
	algHMAC512   = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"
	algSHA1      = "http://www.w3.org/2000/09/xmldsig#sha1"

	labelKID    = "embargo/v1 cpix kid\x00"
	labelBundle = "embargo/v1 cpix bundle\x00"
)

// Option tunes an encoder or decoder.
type Option func(*config)

type config struct {
	maxSize    int
	maxPeriods int
	contentID  string
	version    string
	plain      bool
	scheme     string
	tai        ptp.TAIOffset
	err        error
}

// WithMaxSize sets the largest document accepted, and produced, in bytes.
func WithMaxSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("max size %d", n)
		}
		c.maxSize = n
	}
}

// WithMaxPeriods sets the most key periods one document may carry.
func WithMaxPeriods(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("max periods %d", n)
		}
		c.maxPeriods = n
	}
}

// WithContentID sets CPIX@contentId on encode. Decoders ignore it.
func WithContentID(id string) Option { return func(c *config) { c.contentID = id } }

// WithScheme sets ContentKey@commonEncryptionScheme for packager keys: one
// of "cenc" (the default), "cbc1", "cens", "cbcs".
func WithScheme(s string) Option {
	return func(c *config) {
		switch s {
		case "cenc", "cbc1", "cens", "cbcs":
			c.scheme = s
		default:
			c.fail("scheme %q", s)
		}
	}
}

// WithTAIOffset sets the TAI − UTC offset used to write (and, for packager
// keys, read) xs:dateTime values: 0 to an hour. Default
// ptp.DefaultTAIOffset.
func WithTAIOffset(o ptp.TAIOffset) Option {
	return func(c *config) {
		if o < 0 || time.Duration(o) > time.Hour {
			c.fail("TAI offset %v", time.Duration(o))
		}
		c.tai = o
	}
}

func (c *config) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: option "+format, append([]any{ErrInvalid}, args...)...)
	}
}

func newConfig(opts []Option) (*config, error) {
	c := &config{maxSize: DefaultMaxSize, maxPeriods: DefaultMaxPeriods, scheme: "cenc", tai: ptp.DefaultTAIOffset, version: Version}
	for _, o := range opts {
		o(c)
	}
	return c, c.err
}

// elemLimit is the most elements a document within the period limit can
// hold, given how many one period adds.
func (c *config) elemLimit(perPeriod int) int {
	n := int64(c.maxPeriods)*int64(perPeriod) + 256
	return int(min(n, math.MaxInt32))
}

// BundleKID is the ContentKey@kid a bundle's RK travels under: the first 16
// bytes of SHA-256("embargo/v1 cpix kid\0" ‖ stream(4) ‖ period(8)), with
// the UUID version set to 8 (custom, RFC 9562) and the RFC 4122 variant.
// Deterministic, so that an origin re-exporting a period names it the same
// way, and distinct from any CENC KID an origin draws at random (version 4).
func BundleKID(stream uint32, period uint64) [16]byte {
	var in [len(labelKID) + 12]byte
	copy(in[:], labelKID)
	binary.BigEndian.PutUint32(in[len(labelKID):], stream)
	binary.BigEndian.PutUint64(in[len(labelKID)+4:], period)
	sum := sha256.Sum256(in[:])
	var kid [16]byte
	copy(kid[:], sum[:16])
	kid[6] = kid[6]&0x0f | 0x80
	kid[8] = kid[8]&0x3f | 0x80
	return kid
}

// FormatUUID writes b in the 8-4-4-4-12 lower-case hex form CPIX uses for
// kid and systemId.
func FormatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ParseUUID reads the 8-4-4-4-12 hex form, either case.
func ParseUUID(s string) ([16]byte, error) {
	var b [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, fmt.Errorf("%w: uuid %.40q", ErrMalformed, s)
	}
	j := 0
	for _, r := range [][2]int{{0, 8}, {9, 13}, {14, 18}, {19, 23}, {24, 36}} {
		n, err := hex.Decode(b[j:], []byte(s[r[0]:r[1]]))
		if err != nil {
			return b, fmt.Errorf("%w: uuid %.40q", ErrMalformed, s)
		}
		j += n
	}
	return b, nil
}
