package wire_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSpecDerivation re-derives PROTOCOL.md's vectors from the document's
// own hex with nothing but the standard library and the formulas of §6–§7,
// as an independent implementer would. TestVectors proves the document
// matches the code; this proves the document's text matches its bytes, so
// a wrong sentence fails a test.
func TestSpecDerivation(t *testing.T) {
	raw, err := os.ReadFile(protocolFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw[bytes.Index(raw, []byte("<!-- vectors:begin")):])
	row := func(name string) []byte {
		m := regexp.MustCompile(regexp.QuoteMeta("| "+name+" | `") + "([0-9a-f]+)`").FindStringSubmatch(doc)
		if m == nil {
			t.Fatalf("no row %q", name)
		}
		b, _ := hex.DecodeString(m[1])
		return b
	}
	var dumps [][]byte // the hex dumps, in order: V2 payload, V3 body, V4 shards, V6 datagrams
	parts := strings.Split(doc, "```")
	for j := 1; j < len(parts); j += 2 {
		var b []byte
		for _, line := range strings.Split(strings.TrimSpace(parts[j]), "\n") {
			for _, h := range strings.Fields(line)[1:] {
				x, _ := hex.DecodeString(h)
				b = append(b, x...)
			}
		}
		dumps = append(dumps, b)
	}
	// dumpAfter is the first hex dump after heading.
	dumpAfter := func(heading string) []byte {
		i := strings.Index(doc, heading)
		if i < 0 {
			t.Fatalf("no %q", heading)
		}
		return dumps[strings.Count(doc[:i], "```")/2]
	}
	payload, body, shard0, release := dumps[0], dumps[1], dumps[2], dumpAfter("#### RELEASE (")
	be := binary.BigEndian

	// §6.1 key id
	pub := ed25519.NewKeyFromSeed(row("origin Ed25519 seed")).Public().(ed25519.PublicKey)
	if id := sha256.Sum256(pub); !bytes.Equal(id[:8], row("signing-key id")) || !bytes.Equal(body[32:40], id[:8]) {
		t.Error("§6.1 key id")
	}
	// §6.5 body signature
	msg := append([]byte("embargo/v1 announce\x00"), body[:len(body)-64]...)
	if !ed25519.Verify(pub, msg, body[len(body)-64:]) {
		t.Error("§6.5 body signature")
	}
	// §6.2 commitment from RK (the RELEASE's bytes 24..56) and the body's salt
	rk := release[24:56]
	c := sha256.Sum256(bytes.Join([][]byte{[]byte("embargo/v1 commit\x00"), body[40:56], body[4:8], body[8:16], rk}, nil))
	if !bytes.Equal(c[:], body[56:88]) {
		t.Error("§6.2 commitment")
	}
	// §6.3 open the sealed payload
	sealKey, _ := hkdf.Key(sha256.New, rk, body[40:56], "embargo/v1 seal", 32)
	n := int(be.Uint32(body[88:]))
	plain, err := gcm(sealKey).Open(nil, make([]byte, 12), body[92:92+n], body[:92])
	if err != nil || !bytes.Equal(plain, payload) {
		t.Errorf("§6.3 sealed payload: %v", err)
	}
	// §6.4 unwrap both content keys
	wrapKey, _ := hkdf.Key(sha256.New, row("master key"), nil, "embargo/v1 wrap", 32)
	for i := range int(payload[0]) {
		e := payload[16+48*i : 16+48*(i+1)]
		nonce := bytes.Clone(payload[4:16])
		be.PutUint32(nonce[8:], be.Uint32(nonce[8:])^uint32(i))
		aad := bytes.Join([][]byte{body[4:8], body[8:16], e[:16]}, nil)
		key, err := gcm(wrapKey).Open(nil, nonce, e[16:], aad)
		if want := bytes.Repeat([]byte{0xa1 + byte(i)}, 16); err != nil || !bytes.Equal(key, want) {
			t.Errorf("§6.4 content key %d: %x, %v", i, key, err)
		}
	}
	// §3.1, §6.5, §7.2 shard 0: root signature and Merkle proof
	if data := specShard(t, pub, shard0); !bytes.Equal(data[:len(body)], body) {
		t.Error("§7.2 shard 0 holds the body")
	}
	// V5a: a k = 3 set; its data shards, in order, are the body and zero
	// padding (§3.2, §7.1).
	var data []byte
	for i := range 3 {
		data = append(data, specShard(t, pub, dumpAfter(fmt.Sprintf("#### V5a shard %d (", i)))...)
	}
	if !bytes.Equal(data[:len(body)], body) || bytes.Count(data[len(body):], []byte{0}) != len(data)-len(body) {
		t.Error("§7.1 V5a data shards are not the body and zero padding")
	}
	for i := 3; i < 5; i++ {
		specShard(t, pub, dumpAfter(fmt.Sprintf("#### V5a shard %d (", i)))
	}
}

// specShard checks an ANNOUNCE datagram's root signature (§6.5) and Merkle
// proof (§7.2) and returns its shard bytes.
func specShard(t *testing.T, pub ed25519.PublicKey, d []byte) []byte {
	t.Helper()
	p := d[24:]
	depth := int(p[3])
	root, proof, data := p[20:52], p[116:116+32*depth], p[116+32*depth:]
	rootMsg := bytes.Join([][]byte{[]byte("embargo/v1 shard-root\x00"), d[8:12], d[12:20], p[0:2], p[4:6], p[8:12], p[12:20], root}, nil)
	if !ed25519.Verify(pub, rootMsg, p[52:116]) {
		t.Errorf("§6.5 shard-root signature of index %d", p[2])
	}
	h := sha256.Sum256(append([]byte{0}, data...))
	for l, idx := 0, int(p[2]); l < depth; l, idx = l+1, idx>>1 {
		sib := proof[32*l : 32*(l+1)]
		if idx&1 == 0 {
			h = sha256.Sum256(bytes.Join([][]byte{{1}, h[:], sib}, nil))
		} else {
			h = sha256.Sum256(bytes.Join([][]byte{{1}, sib, h[:]}, nil))
		}
	}
	if !bytes.Equal(h[:], root) {
		t.Errorf("§7.2 Merkle proof of index %d", p[2])
	}
	return data
}

func gcm(key []byte) cipher.AEAD {
	b, _ := aes.NewCipher(key)
	a, _ := cipher.NewGCM(b)
	return a
}
