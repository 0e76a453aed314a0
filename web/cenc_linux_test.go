package web

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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

// mp4Find follows path (box types, each inside the previous) from the top
// of b.
func mp4Find(b []byte, path ...string) (mp4Box, error) {
	from, to := 0, len(b)
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
	stsd, err := mp4Find(template, "moov", "trak", "mdia", "minf", "stbl", "stsd")
	if err != nil {
		return nil, err
	}
	// stsd: version/flags, entry count, then encv whose sinf holds tenc.
	encv, err := mp4Find(template[stsd.start+16:stsd.end], "encv")
	if err != nil {
		return nil, err
	}
	encv.start, encv.end = encv.start+stsd.start+16, encv.end+stsd.start+16
	// encv: 8 + 78 bytes of VisualSampleEntry before its child boxes.
	tencBox, err := mp4Find(template[encv.start+86:encv.end], "sinf", "schi", "tenc")
	if err != nil {
		return nil, err
	}
	kidAt := encv.start + 86 + tencBox.start + 16 // header, version/flags, 2 reserved, isProtected, IV size
	moof, err := mp4Find(template, "moof")
	if err != nil {
		return nil, err
	}
	mdat, err := mp4Find(template, "mdat")
	if err != nil {
		return nil, err
	}
	if mdat.start != moof.end {
		return nil, errors.New("mp4: template's mdat does not follow its moof")
	}
	traf, err := mp4Find(template[moof.start+8:moof.end], "traf")
	if err != nil {
		return nil, err
	}
	traf.start, traf.end = traf.start+moof.start+8, traf.end+moof.start+8
	senc, err := mp4Find(enc, "moov", "trak", "mdia", "minf", "stbl", "senc")
	if err != nil {
		return nil, err
	}
	saiz, err := mp4Find(enc, "moov", "trak", "mdia", "minf", "stbl", "saiz")
	if err != nil {
		return nil, err
	}
	encMdat, err := mp4Find(enc, "mdat")
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
	trun, err := mp4Find(children, "trun")
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
	copy(out[kidAt:], kid[:])
	moofOut := mp4Put(nil, "moof", template[moof.start+8:traf.start], newTraf, template[traf.end:moof.end])
	out = append(out, moofOut...)
	return append(out, enc[encMdat.start:encMdat.end]...), nil
}
