package bpf

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf/asm"

	"github.com/embargo-live/embargo/wire"
)

// Where the datagram is. A socket filter on a UDP socket runs from
// udp_queue_rcv_one_skb (IPv4) and udpv6_queue_rcv_one_skb (IPv6), after the
// kernel checked the UDP length and checksum and trimmed the skb to the UDP
// length but before it pulled the UDP header: skb->data is the UDP header
// and skb->len is 8 + the datagram length, for AF_INET, AF_INET6 and
// IPv4-mapped traffic on a dual-stack socket alike (measured on Linux 6.18;
// TestRealSocketVerdicts pins it). BPF_PROG_TEST_RUN for a socket filter
// builds an skb from the input, pulls a 14-byte Ethernet header and runs the
// filter with skb->data just after it, so tests feed Ethernet + UDP +
// datagram and the filter sees exactly what a socket would.
//
// The program checks that the first 8 bytes look like that UDP header (its
// length field equals skb->len) before trusting offsets; if a future kernel
// hands it something else, it passes the packet uninspected and counts
// VerdictUnparsed, so receivers degrade to user-space validation instead of
// going deaf.
const (
	udpHeaderLen = 8
	udpLenOff    = 4 // UDP length field

	// Header offsets (PROTOCOL.md §2); wire keeps its own unexported, and
	// TestVerdictsAgreeWithWire holds the two together.
	offVersion  = 4
	offType     = 5
	offFlags    = 6 // big-endian: byte 6 holds the critical flags, byte 7 the advisory ones
	offStream   = 8
	offPeriod   = 12
	offLength   = 20
	offReserved = 22

	// RELEASE payload offsets (PROTOCOL.md §3.3), from the datagram start.
	offReleaseAt       = wire.HeaderLen + wire.RKLen
	offReleaseReserved = wire.HeaderLen + 52
	releaseTailLen     = wire.ReleaseLen - offReleaseAt // releaseAt … reserved
)

// Stack layout. The verifier insists on naturally aligned stack accesses,
// so the 32 bytes of UDP + protocol header are placed at fp−36, which puts
// the 8-byte period on an 8-byte boundary (fp−16).
const (
	stkPkt      = -36                                         // UDP header, then the protocol header
	stkHdr      = stkPkt + udpHeaderLen                       // protocol header (fp−28)
	stkTail     = -64                                         // RELEASE bytes from releaseAt to the end
	stkTailRes  = stkTail + offReleaseReserved - offReleaseAt // RELEASE reserved u32
	stkKey      = -128                                        // first-arrival key {stream u32, 0 u32, period u64, socket cookie u64, RK[0:8]}
	stkNow      = -88                                         // arrival time, the first-arrival value
	stkIndex    = -92                                         // u32 key for array maps
	stkSrc      = -144                                        // source address, 16 bytes (IPv4 mapped)
	pktLoadSize = udpHeaderLen + wire.HeaderLen
)

// mapFDs are the maps the program refers to.
type mapFDs struct {
	verdicts, hist, arrivals, config, sources int
}

// builder appends instructions and resolves labels: label names the next
// instruction added, and a second label for the same instruction becomes an
// alias of the first (asm allows one symbol per instruction).
type builder struct {
	insns   asm.Instructions
	pending string
	alias   map[string]string
	n       int // unique-label counter
}

func (b *builder) add(ins ...asm.Instruction) {
	for _, in := range ins {
		if b.pending != "" {
			in = in.WithSymbol(b.pending)
			b.pending = ""
		}
		b.insns = append(b.insns, in)
	}
}

func (b *builder) label(name string) {
	if b.pending != "" {
		b.alias[name] = b.pending
		return
	}
	b.pending = name
}

func (b *builder) finish() asm.Instructions {
	for i, in := range b.insns {
		if to, ok := b.alias[in.Reference()]; ok {
			b.insns[i] = in.WithReference(to)
		}
	}
	return b.insns
}

// loadBytes copies n packet bytes from offset off to the stack at stk; R0
// is the helper's result (0 or a negative errno).
func (b *builder) loadBytes(off, stk int16, n int32) {
	b.add(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, int32(off)),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, int32(stk)),
		asm.Mov.Imm(asm.R4, n),
		asm.FnSkbLoadBytes.Call(),
	)
}

// increment adds 1 to the entry of the array map fd whose u32 index is at
// stkIndex. Lookups of an in-range index cannot fail, but the verifier wants
// the check.
func (b *builder) increment(fd int) {
	b.n++
	skip := fmt.Sprintf("inc%d", b.n)
	b.add(
		asm.LoadMapPtr(asm.R1, fd),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkIndex),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.Mov.Imm(asm.R1, 1),
		// Atomic even in a per-CPU map: BPF_PROG_TEST_RUN runs in process
		// context, where a softirq running this program on the same CPU
		// could interleave with a plain read-modify-write.
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
	)
	b.label(skip)
}

// configValue loads the u64 in slot of the config map fd into R1, or
// continues at missing if the lookup fails (it cannot, for a slot in
// range, but the verifier wants the check).
func (b *builder) configValue(fd int, slot int64, missing string) {
	b.add(
		asm.StoreImm(asm.RFP, stkIndex, slot, asm.Word),
		asm.LoadMapPtr(asm.R1, fd),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkIndex),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, missing),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
	)
}

// bpfNoExist is BPF_NOEXIST: create only, never overwrite.
const bpfNoExist = 1

// program returns the socket filter. Registers that live across helper
// calls: R6 the context, R7 skb->len (the pass verdict returns it), R8 the
// datagram length, R9 the verdict reason.
func program(m mapFDs) asm.Instructions {
	b := &builder{alias: map[string]string{}}
	h := func(off int16) int16 { return stkHdr + off }

	b.add(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // __sk_buff.len
	)

	// Injected loss first, as if the network had eaten the datagram: nothing
	// else is counted or stamped for it.
	b.add(
		asm.StoreImm(asm.RFP, stkIndex, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, m.config),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkIndex),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "source"),
		asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord), // threshold
		asm.JEq.Imm(asm.R8, 0, "source"),
		asm.FnGetPrandomU32.Call(),
		asm.Mov.Reg32(asm.R0, asm.R0), // zero-extend: a u32 against a u64 threshold
		asm.JGE.Reg(asm.R0, asm.R8, "source"),
		asm.Mov.Imm(asm.R9, int32(reasonInjectedLoss)),
		asm.Ja.Label("drop"),
	)
	b.label("source")
	b.sourceCheck(m)

	// Load the UDP header and the protocol header in one call when the
	// packet is long enough; a shorter one only needs its UDP header, to
	// prove the layout, before it is counted as short.
	b.label("parse")
	b.add(
		asm.JLT.Imm(asm.R7, udpHeaderLen, "unparsed"),
		asm.JGE.Imm(asm.R7, pktLoadSize, "full"),
	)
	b.loadBytes(0, stkPkt, udpHeaderLen)
	b.add(
		asm.JNE.Imm(asm.R0, 0, "unparsed"),
		asm.LoadMem(asm.R1, asm.RFP, stkPkt+udpLenOff, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.JNE.Reg(asm.R1, asm.R7, "unparsed"),
		asm.Mov.Imm(asm.R9, int32(reasonShort)),
		asm.Ja.Label("drop"),
	)
	b.label("full")
	b.loadBytes(0, stkPkt, pktLoadSize)
	b.add(
		asm.JNE.Imm(asm.R0, 0, "unparsed"),
		asm.LoadMem(asm.R1, asm.RFP, stkPkt+udpLenOff, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.JNE.Reg(asm.R1, asm.R7, "unparsed"),

		// Header checks in wire.Peek's order, so the reasons agree with it.
		asm.Mov.Reg(asm.R8, asm.R7),
		asm.Sub.Imm(asm.R8, udpHeaderLen),
		asm.Mov.Imm(asm.R9, int32(reasonLong)),
		asm.JGT.Imm(asm.R8, wire.MaxDatagram, "drop"),
		asm.LoadMem(asm.R1, asm.RFP, h(0), asm.Word),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.Mov.Imm(asm.R9, int32(reasonMagic)),
		asm.JNE.Imm(asm.R1, int32(wire.Magic), "drop"),
		asm.LoadMem(asm.R1, asm.RFP, h(offVersion), asm.Byte),
		asm.Mov.Imm(asm.R9, int32(reasonVersion)),
		asm.JNE.Imm(asm.R1, int32(wire.Version), "drop"),
		asm.LoadMem(asm.R1, asm.RFP, h(offType), asm.Byte),
		asm.Mov.Imm(asm.R9, int32(reasonType)),
	)
	// Known types come from wire, as ranges, so that a type added there
	// needs no edit here.
	for _, r := range knownTypeRanges() {
		b.add(
			asm.JLT.Imm(asm.R1, int32(r[0]), "drop"),
			asm.JLE.Imm(asm.R1, int32(r[1]), "typeok"),
		)
	}
	b.add(asm.Ja.Label("drop"))
	b.label("typeok")
	b.add(
		// Version 1 defines no critical flag, so every bit of the high byte
		// is unknown.
		asm.LoadMem(asm.R1, asm.RFP, h(offFlags), asm.Byte),
		asm.Mov.Imm(asm.R9, int32(reasonFlags)),
		asm.JNE.Imm(asm.R1, 0, "drop"),
		asm.LoadMem(asm.R1, asm.RFP, h(offReserved), asm.Half),
		asm.Mov.Imm(asm.R9, int32(reasonReserved)),
		asm.JNE.Imm(asm.R1, 0, "drop"),
		asm.LoadMem(asm.R1, asm.RFP, h(offLength), asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.Add.Imm(asm.R1, wire.HeaderLen),
		asm.Mov.Imm(asm.R9, int32(reasonLength)),
		asm.JNE.Reg(asm.R1, asm.R8, "drop"),
		asm.LoadMem(asm.R1, asm.RFP, h(offType), asm.Byte),
		asm.JNE.Imm(asm.R1, int32(wire.TypeRelease), "pass"),

		// RELEASE has a fixed size and a reserved word (wire.Release.Decode:
		// ErrLength, then ErrReserved). R9 still says length.
		asm.JNE.Imm(asm.R8, wire.ReleaseLen, "drop"),
	)
	b.loadBytes(udpHeaderLen+offReleaseAt, stkTail, releaseTailLen)
	b.add(
		asm.JNE.Imm(asm.R0, 0, "unparsed"),
		asm.LoadMem(asm.R1, asm.RFP, stkTailRes, asm.Word),
		asm.Mov.Imm(asm.R9, int32(reasonReserved)),
		asm.JNE.Imm(asm.R1, 0, "drop"),
		asm.StoreImm(asm.RFP, stkIndex, int64(reasonRelease), asm.Word),
	)
	b.increment(m.verdicts)

	// Catch-up retransmissions stay out of skew statistics (PROTOCOL.md
	// §2.2), and so does a releaseAt that wire would refuse (negative).
	b.add(
		asm.LoadMem(asm.R1, asm.RFP, h(offFlags), asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.JSet.Imm(asm.R1, int32(wire.FlagCatchUp), "pass"),
		asm.LoadMem(asm.R1, asm.RFP, stkTail, asm.DWord),
		asm.HostTo(asm.BE, asm.R1, asm.DWord),
		asm.JSLT.Imm(asm.R1, 0, "pass"),
		asm.StoreMem(asm.RFP, stkTail, asm.R1, asm.DWord), // host-order releaseAt
		asm.LoadMem(asm.R1, asm.RFP, h(offStream), asm.Word),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stkKey, asm.R1, asm.Word),
		asm.StoreImm(asm.RFP, stkKey+4, 0, asm.Word),
		asm.LoadMem(asm.R1, asm.RFP, h(offPeriod), asm.DWord),
		asm.HostTo(asm.BE, asm.R1, asm.DWord),
		asm.StoreMem(asm.RFP, stkKey+8, asm.R1, asm.DWord),
		// Per socket: on a bench host each socket is a simulated client,
		// and every client's first arrival is a skew sample.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, stkKey+16, asm.R0, asm.DWord),
	)
	// Per secret too: a forged RELEASE of the period is stamped apart from
	// the genuine one, so that user space, which alone can check a secret
	// against the commitment, counts the genuine one's stamp (Confirm).
	b.loadBytes(udpHeaderLen+wire.HeaderLen, stkKey+24, arrivalSecretLen)
	b.add(
		asm.JNE.Imm(asm.R0, 0, "pass"),
		// Only the first copy of a secret is stamped: repeats (and a
		// second edge's copy) arrive later by design and would drag the
		// histogram towards the repeat interval. Look before updating: an
		// LRU update takes a free element before it checks BPF_NOEXIST,
		// which made each repeat cost 271 instead of 150 ns.
		asm.LoadMapPtr(asm.R1, m.arrivals),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkKey),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),
		// A first arrival: only now read the clock (a repeat never needs
		// it), plus the TAI correction (config slot 1): the receiver's TAI
		// minus the kernel's CLOCK_TAI, which differ by TAI − UTC on a host
		// whose kernel TAI offset was never set.
		asm.FnKtimeGetTaiNs.Call(),
		asm.StoreMem(asm.RFP, stkNow, asm.R0, asm.DWord),
	)
	b.configValue(m.config, configTAICorrection, "stamp")
	b.add(
		asm.LoadMem(asm.R2, asm.RFP, stkNow, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R1),
		asm.StoreMem(asm.RFP, stkNow, asm.R2, asm.DWord),
	)
	b.label("stamp")
	b.add(
		asm.LoadMapPtr(asm.R1, m.arrivals),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkKey),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stkNow),
		asm.Mov.Imm(asm.R4, bpfNoExist), // another CPU may have won the race since
		asm.FnMapUpdateElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "pass"),

		asm.LoadMem(asm.R1, asm.RFP, stkNow, asm.DWord),
		asm.LoadMem(asm.R2, asm.RFP, stkTail, asm.DWord),
		asm.Sub.Reg(asm.R1, asm.R2), // skew in ns
	)
	b.bucket()
	b.label("hist")
	b.add(asm.StoreMem(asm.RFP, stkIndex, asm.R2, asm.Word))
	b.increment(m.hist)

	b.label("pass")
	b.add(asm.Mov.Imm(asm.R9, int32(reasonPass)))
	b.label("accept")
	b.add(asm.StoreMem(asm.RFP, stkIndex, asm.R9, asm.Word))
	b.increment(m.verdicts)
	b.add(asm.Mov.Reg(asm.R0, asm.R7), asm.Return())

	b.label("unparsed")
	b.add(asm.Mov.Imm(asm.R9, int32(reasonUnparsed)), asm.Ja.Label("accept"))

	b.label("drop")
	b.add(asm.StoreMem(asm.RFP, stkIndex, asm.R9, asm.Word))
	b.increment(m.verdicts)
	b.add(asm.Mov.Imm(asm.R0, 0), asm.Return())
	return b.finish()
}

// bpfHdrStartNet is BPF_HDR_START_NET: bpf_skb_load_bytes_relative's
// offsets count from the network (IP) header.
const bpfHdrStartNet = 1

// v4MappedWord is bytes 8–11 of an IPv4-mapped IPv6 address (00 00 ff ff)
// as the program stores them: a u32 in host order.
var v4MappedWord = int64(int32(binary.NativeEndian.Uint32([]byte{0, 0, 0xff, 0xff})))

// sourceCheck drops the packet, as reasonSource, when source filtering is
// on (config slot configSources) and its IP source address is not in the
// sources map; it continues at "parse" otherwise, and also when the
// network header cannot be read (fail open: user space checks the source
// too). The address is read through bpf_skb_load_bytes_relative from the
// network header, which a socket filter may reach although skb->data is
// at the UDP header.
func (b *builder) sourceCheck(m mapFDs) {
	load := func(off int32, stk int16, n int32) {
		b.add(
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, off),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, int32(stk)),
			asm.Mov.Imm(asm.R4, n),
			asm.Mov.Imm(asm.R5, bpfHdrStartNet),
			asm.FnSkbLoadBytesRelative.Call(),
			asm.JNE.Imm(asm.R0, 0, "parse"),
		)
	}
	b.configValue(m.config, configSources, "parse")
	b.add(asm.JEq.Imm(asm.R1, 0, "parse"))
	load(0, stkSrc, 1) // version and IHL
	b.add(
		asm.LoadMem(asm.R1, asm.RFP, stkSrc, asm.Byte),
		asm.RSh.Imm(asm.R1, 4),
		asm.JEq.Imm(asm.R1, 6, "src6"),
		asm.JNE.Imm(asm.R1, 4, "parse"),
		asm.StoreImm(asm.RFP, stkSrc, 0, asm.Word),
		asm.StoreImm(asm.RFP, stkSrc+4, 0, asm.Word),
		asm.StoreImm(asm.RFP, stkSrc+8, v4MappedWord, asm.Word),
	)
	load(12, stkSrc+12, 4) // IPv4 source
	b.add(asm.Ja.Label("srclookup"))
	b.label("src6")
	load(8, stkSrc, 16) // IPv6 source
	b.label("srclookup")
	b.add(
		asm.LoadMapPtr(asm.R1, m.sources),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkSrc),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "parse"),
		asm.Mov.Imm(asm.R9, int32(reasonSource)),
		asm.Ja.Label("drop"),
	)
}

// bucket computes Bucket's index of the skew in R1 (ns, signed) into R2 and
// continues at the "hist" label. It mirrors skew.Bucket (engine/receiver/skew) step for
// step; R3–R5 are scratch.
func (b *builder) bucket() {
	b.add(
		asm.Mov.Imm(asm.R2, 0),
		asm.JSLT.Imm(asm.R1, 0, "hist"),
		asm.Div.Imm(asm.R1, 1000), // unsigned, R1 ≥ 0 here: whole µs
		asm.JGE.Imm(asm.R1, linearBuckets, "octave"),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Add.Imm(asm.R2, 1),
		asm.Ja.Label("hist"),
	)
	b.label("octave")
	b.add(
		asm.Mov.Imm(asm.R2, overflowBucket),
		asm.JGE.Imm(asm.R1, overflowMicro, "hist"),
		// msb of R1 into R4 by binary search, unrolled (no loops for the
		// verifier); R1 < 2^24.
		asm.Mov.Reg(asm.R3, asm.R1),
		asm.Mov.Imm(asm.R4, 0),
	)
	for _, s := range []int32{16, 8, 4, 2, 1} {
		b.n++
		next := fmt.Sprintf("msb%d", b.n)
		b.add(
			asm.JLT.Imm(asm.R3, 1<<s, next),
			asm.RSh.Imm(asm.R3, s),
			asm.Add.Imm(asm.R4, s),
		)
		b.label(next)
	}
	// sub = (µs >> (msb − subBits)) & (subBuckets − 1);
	// index = 1 + linearBuckets + subBuckets·(msb − firstOctave) + sub.
	b.add(
		asm.Mov.Reg(asm.R5, asm.R4),
		asm.Sub.Imm(asm.R5, subBits),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Reg(asm.R2, asm.R5),
		asm.And.Imm(asm.R2, subBuckets-1),
		asm.LSh.Imm(asm.R4, subBits),
		asm.Add.Reg(asm.R2, asm.R4),
		asm.Add.Imm(asm.R2, 1+linearBuckets-subBuckets*firstOctave),
	)
}

// knownTypeRanges returns the message types wire.Type.Known accepts as
// inclusive, ascending [lo, hi] ranges.
func knownTypeRanges() [][2]uint8 {
	var rs [][2]uint8
	for t := 0; t < 256; t++ {
		if !wire.Type(t).Known() {
			continue
		}
		if n := len(rs); n > 0 && int(rs[n-1][1]) == t-1 {
			rs[n-1][1] = uint8(t)
		} else {
			rs = append(rs, [2]uint8{uint8(t), uint8(t)})
		}
	}
	return rs
}
