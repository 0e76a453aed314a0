package web

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/embargo-live/embargo/seal"
)

// ffmpeg 5.1 (Debian bookworm) encrypts MP4 samples with CENC but writes
// the sample auxiliary information (senc, saiz, saio: each sample's IV
// and clear/encrypted subsample ranges) only into the moov's sample
// table, never into a movie fragment's traf, even with -movflags
// frag_keyframe+empty_moov: Chromium's MSE then refuses the fragment
// ("CHUNK_DEMUXER_ERROR_APPEND_FAILED: Sample encryption info is not
// available."). cencFragment moves it where MSE reads it.

// mp4Box is one ISO BMFF box of a buffer: b[start:end], its payload from
// start+8 (no 64-bit sizes here: the test's boxes are small).
type mp4Box struct {
	typ        string
	start, end int
}

// mp4Boxes lists the boxes in b[from:to].
func mp4Boxes(b []byte, from, to int) ([]mp4Box, error) {
	var out []mp4Box
	for at := from; at < to; {
		if to-at < 8 {
			return nil, fmt.Errorf("mp4: %d stray bytes at %d", to-at, at)
		}
		n := int(binary.BigEndian.Uint32(b[at:]))
		if n < 8 || at+n > to {
			return nil, fmt.Errorf("mp4: box %q at %d: size %d beyond its parent (%d)", b[at+4:at+8], at, n, to)
		}
		out = append(out, mp4Box{typ: string(b[at+4 : at+8]), start: at, end: at + n})
		at += n
	}
	return out, nil
}

// mp4Find follows path (box types, each inside the previous) from the
// boxes in b[from:to]; a box found must hold at least min bytes.
func mp4Find(b []byte, from, to, min int, path ...string) (mp4Box, error) {
	var found mp4Box
	for i, typ := range path {
		bs, err := mp4Boxes(b, from, to)
		if err != nil {
			return found, err
		}
		j := slices.IndexFunc(bs, func(x mp4Box) bool { return x.typ == typ })
		if j < 0 {
			return found, fmt.Errorf("mp4: no %v", path[:i+1])
		}
		found = bs[j]
		from, to = found.start+8, found.end
	}
	if found.end-found.start < min {
		return found, fmt.Errorf("mp4: %v of %d bytes, want ≥ %d", path, found.end-found.start, min)
	}
	return found, nil
}

// mp4Put appends a box of type typ holding payload.
func mp4Put(out []byte, typ string, payload ...[]byte) []byte {
	n := 8
	for _, p := range payload {
		n += len(p)
	}
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	out = append(out, typ...)
	for _, p := range payload {
		out = append(out, p...)
	}
	return out
}

// cencFragment builds one MSE segment (init segment, then one movie
// fragment) of a period: template is ffmpeg's fragmented CENC output of
// the clip (-movflags frag_keyframe+empty_moov+default_base_moof, a
// single fragment) under any KID, enc its unfragmented CENC output under
// the period's key and KID. The segment is the template's init with kid
// in its tenc, and its fragment with enc's encrypted samples and
// senc, saiz and a saio pointing at senc's entries.
func cencFragment(template, enc []byte, kid [16]byte) ([]byte, error) {
	// stsd: version/flags and entry count, then encv: 78 bytes of
	// VisualSampleEntry, then its boxes, sinf's schi holding tenc:
	// version/flags, 2 reserved, isProtected, IV size, then the KID.
	stsd, err := mp4Find(template, 0, len(template), 16, "moov", "trak", "mdia", "minf", "stbl", "stsd")
	if err != nil {
		return nil, err
	}
	encv, err := mp4Find(template, stsd.start+16, stsd.end, 86, "encv")
	if err != nil {
		return nil, err
	}
	tenc, err := mp4Find(template, encv.start+86, encv.end, 32, "sinf", "schi", "tenc")
	if err != nil {
		return nil, err
	}
	moof, err := mp4Find(template, 0, len(template), 8, "moof")
	if err != nil {
		return nil, err
	}
	mdat, err := mp4Find(template, 0, len(template), 8, "mdat")
	if err != nil {
		return nil, err
	}
	if mdat.start != moof.end || tenc.end > moof.start {
		return nil, errors.New("mp4: template not init segment, moof, mdat in that order")
	}
	traf, err := mp4Find(template, moof.start+8, moof.end, 8, "traf")
	if err != nil {
		return nil, err
	}
	stbl := []string{"moov", "trak", "mdia", "minf", "stbl"}
	senc, err := mp4Find(enc, 0, len(enc), 16, append(stbl, "senc")...)
	if err != nil {
		return nil, err
	}
	saiz, err := mp4Find(enc, 0, len(enc), 8, append(stbl, "saiz")...)
	if err != nil {
		return nil, err
	}
	encMdat, err := mp4Find(enc, 0, len(enc), 8, "mdat")
	if err != nil {
		return nil, err
	}
	if encMdat.end-encMdat.start != mdat.end-mdat.start {
		return nil, fmt.Errorf("mp4: %d bytes of encrypted samples, the template's fragment has %d", encMdat.end-encMdat.start-8, mdat.end-mdat.start-8)
	}

	// The new traf: the template's children, then senc, saiz and saio.
	// saio (version 0, one entry) is relative to the moof
	// (default-base-is-moof): where senc's first entry will be.
	children := bytes.Clone(template[traf.start+8 : traf.end])
	// senc's first entry: after its header, version/flags and count.
	sencAt := traf.start - moof.start + 8 + len(children) + 16
	saio := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 0, 0, 0, 0, 1}, uint32(sencAt))
	grow := (senc.end - senc.start) + (saiz.end - saiz.start) + 20
	// trun's data offset (flag 0x1) is from the moof: it moves by grow.
	trun, err := mp4Find(children, 0, len(children), 20, "trun")
	if err != nil {
		return nil, err
	}
	if children[trun.start+11]&1 == 0 {
		return nil, errors.New("mp4: template's trun has no data offset")
	}
	off := trun.start + 16
	binary.BigEndian.PutUint32(children[off:], binary.BigEndian.Uint32(children[off:])+uint32(grow))
	newTraf := mp4Put(nil, "traf", children, enc[senc.start:senc.end], enc[saiz.start:saiz.end], mp4Put(nil, "saio", saio))

	out := bytes.Clone(template[:moof.start])
	copy(out[tenc.start+16:], kid[:])
	moofOut := mp4Put(nil, "moof", template[moof.start+8:traf.start], newTraf, template[traf.end:moof.end])
	out = append(out, moofOut...)
	return append(out, enc[encMdat.start:encMdat.end]...), nil
}

// TestCENCFragment checks cencFragment on ffmpeg's output: the period's
// KID in the init segment, the fragment's senc, saiz and a saio pointing
// at senc's entries, its trun's data offset at the encrypted samples; and
// truncated input is an error, not a panic.
func TestCENCFragment(t *testing.T) {
	ff := ffmpeg(t)
	dir := t.TempDir()
	clip := clearClip(t, ff, dir, 400*time.Millisecond)
	k, other := randomKey(), randomKey()
	template, err := encrypt(ff, clip, dir, "template.mp4", other, true)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypt(ff, clip, dir, "enc.mp4", k, false)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := cencFragment(template, enc, k.KID)
	if err != nil {
		t.Fatal(err)
	}
	stbl := []string{"moov", "trak", "mdia", "minf", "stbl"}
	stsd, err := mp4Find(seg, 0, len(seg), 16, append(stbl, "stsd")...)
	if err != nil {
		t.Fatal(err)
	}
	encv, err := mp4Find(seg, stsd.start+16, stsd.end, 86, "encv")
	if err != nil {
		t.Fatal(err)
	}
	tenc, err := mp4Find(seg, encv.start+86, encv.end, 32, "sinf", "schi", "tenc")
	if err != nil {
		t.Fatal(err)
	}
	if got := seg[tenc.start+16 : tenc.start+32]; !bytes.Equal(got, k.KID[:]) {
		t.Errorf("tenc KID %x, want %x", got, k.KID)
	}
	moof, err := mp4Find(seg, 0, len(seg), 8, "moof")
	if err != nil {
		t.Fatal(err)
	}
	box := func(path ...string) mp4Box {
		t.Helper()
		b, err := mp4Find(seg, moof.start+8, moof.end, 20, path...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	senc, saio, trun := box("traf", "senc"), box("traf", "saio"), box("traf", "trun")
	box("traf", "saiz")
	if at := int(binary.BigEndian.Uint32(seg[saio.end-4:])); at != senc.start+16-moof.start {
		t.Errorf("saio points %d bytes into the moof, senc's entries are at %d", at, senc.start+16-moof.start)
	}
	if n, m := binary.BigEndian.Uint32(seg[senc.start+12:]), binary.BigEndian.Uint32(seg[trun.start+12:]); n != m || n != 10 {
		t.Errorf("senc has %d entries, trun %d samples; want 10 (0.4 s at 25 fps)", n, m)
	}
	mdat, err := mp4Find(seg, 0, len(seg), 8, "mdat")
	if err != nil {
		t.Fatal(err)
	}
	if at := int(binary.BigEndian.Uint32(seg[trun.start+16:])); at != mdat.start+8-moof.start {
		t.Errorf("trun's data offset %d, the samples are %d bytes after the moof", at, mdat.start+8-moof.start)
	}
	encMdat, err := mp4Find(enc, 0, len(enc), 8, "mdat")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(seg[mdat.start:], enc[encMdat.start:encMdat.end]) {
		t.Error("the fragment's samples are not ffmpeg's encrypted ones")
	}
	// Cut anywhere before the end of what it reads (the template's
	// mdat; enc's moov, last).
	tmdat, err := mp4Find(template, 0, len(template), 8, "mdat")
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < tmdat.end; n += 7 {
		if _, err := cencFragment(template[:n], enc, k.KID); err == nil {
			t.Fatalf("template cut at %d of %d bytes: no error", n, len(template))
		}
	}
	for n := 0; n < len(enc); n += 7 {
		if _, err := cencFragment(template, enc[:n], k.KID); err == nil {
			t.Fatalf("encrypted clip cut at %d of %d bytes: no error", n, len(enc))
		}
	}
}

// randomKey is a content key and KID for a test clip.
func randomKey() seal.ContentKey {
	var k seal.ContentKey
	rand.Read(k.Key[:])
	rand.Read(k.KID[:])
	return k
}

// clearKeySystem is W3C ClearKey's system ID (1077efec-c0b2-4d02-ace3-3c1e52e2fb4b)
// in a pssh box.
var clearKeySystem = [16]byte{0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b}

// clearKeyPSSH is a ClearKey pssh box naming kids (W3C "Common SystemID
// and PSSH Box Format": version 1, the KIDs, no data): what a browser
// hands to the page in an `encrypted` event, init data type "cenc".
func clearKeyPSSH(kids ...[16]byte) []byte {
	b := append([]byte{1, 0, 0, 0}, clearKeySystem[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(kids)))
	for _, k := range kids {
		b = append(b, k[:]...)
	}
	return mp4Put(nil, "pssh", binary.BigEndian.AppendUint32(b, 0))
}

// withPSSH is seg (an init segment, then fragments) with pssh as the
// moov's last box. Nothing after the moov moves relative to its moof
// (default-base-is-moof), so the fragments stand as they are.
func withPSSH(seg, pssh []byte) ([]byte, error) {
	moov, err := mp4Find(seg, 0, len(seg), 8, "moov")
	if err != nil {
		return nil, err
	}
	out := mp4Put(bytes.Clone(seg[:moov.start]), "moov", seg[moov.start+8:moov.end], pssh)
	return append(out, seg[moov.end:]...), nil
}

// TestPSSH checks clearKeyPSSH against the W3C format byte by byte and
// withPSSH on a segment of ffmpeg's: the pssh the moov's last box, the
// moov's size grown by it, everything else as it was; no moov is an
// error.
func TestPSSH(t *testing.T) {
	k1 := [16]byte{0: 0xab, 15: 0x01}
	k2 := [16]byte{0: 0xcd, 15: 0x02}
	want := []byte{
		0, 0, 0, 0x44, 'p', 's', 's', 'h', // 68 bytes: header, version and flags, system, count, 2 KIDs, data size
		1, 0, 0, 0,
		0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
		0, 0, 0, 2,
		0xab, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0xcd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
		0, 0, 0, 0,
	}
	pssh := clearKeyPSSH(k1, k2)
	if !bytes.Equal(pssh, want) {
		t.Fatalf("clearKeyPSSH:\n got % x\nwant % x", pssh, want)
	}

	ff := ffmpeg(t)
	dir := t.TempDir()
	clip := clearClip(t, ff, dir, 400*time.Millisecond)
	seg, err := encrypt(ff, clip, dir, "seg.mp4", randomKey(), true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := withPSSH(seg, pssh)
	if err != nil {
		t.Fatal(err)
	}
	moov, err := mp4Find(seg, 0, len(seg), 8, "moov")
	if err != nil {
		t.Fatal(err)
	}
	moov2, err := mp4Find(got, 0, len(got), 8, "moov")
	if err != nil {
		t.Fatal(err)
	}
	children, err := mp4Boxes(got, moov2.start+8, moov2.end)
	if err != nil {
		t.Fatal(err)
	}
	last := children[len(children)-1]
	switch {
	case last.typ != "pssh" || !bytes.Equal(got[last.start:last.end], pssh):
		t.Errorf("the moov's last box is %q % x, want the pssh", last.typ, got[last.start:last.end])
	case moov2.end-moov2.start != moov.end-moov.start+len(pssh):
		t.Errorf("moov of %d bytes, want %d + %d", moov2.end-moov2.start, moov.end-moov.start, len(pssh))
	case !bytes.Equal(got[:moov.start], seg[:moov.start]) || !bytes.Equal(got[moov2.start+8:last.start], seg[moov.start+8:moov.end]) || !bytes.Equal(got[moov2.end:], seg[moov.end:]):
		t.Error("withPSSH changed more than the moov's size and its last box")
	}
	if _, err := withPSSH(seg[:moov.start+4], pssh); err == nil {
		t.Error("a segment cut inside its moov's header: no error")
	}
}
