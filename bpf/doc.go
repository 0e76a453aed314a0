// Package bpf is the receivers' kernel-side pre-filter and arrival stamp: an
// eBPF socket filter, written with cilium/ebpf's assembler (no C toolchain),
// that drops datagrams which are not well-formed protocol messages before
// they are queued to the socket, counting every verdict by reason, and
// stamps the kernel arrival (CLOCK_TAI) of each socket's first RELEASE of
// each (stream, period, secret) into a bounded LRU map and its skew against
// releaseAt into a fixed-bucket histogram. The kernel cannot tell a forged
// secret from the genuine one, so that histogram is reported apart
// (Unconfirmed); Histogram counts only the stamps of secrets a receiver
// confirmed against the commitment (Confirm), so forged early RELEASEs
// never show as early arrivals. One Filter is loaded once and attached to
// any number of sockets, which all count into the same maps. Where BPF
// cannot be loaded (not root, not Linux; Available says why) receivers use
// the same skew.Histogram in user space, fed with SO_TIMESTAMPNS stamps through
// Histogram.Add, so both paths report comparable numbers.
//
// A receiver that knows its edges gives their addresses to SetSources: the
// filter then drops every datagram from another source address before
// anything else (VerdictSource), reading it from the IP header with
// bpf_skb_load_bytes_relative, as receiver.Config.Sources does in user
// space. Forged shards and RELEASEs from elsewhere then cost the receiver
// no wake-up at all.
//
// The filter drops for the reasons wire.Peek and wire.Release.Decode give,
// in the same order (TestVerdictsAgreeWithWire holds them together), except
// cross-field checks such as a negative releaseAt, which it passes unstamped
// for user space to refuse. It never answers or rewrites anything.
package bpf

// What was measured and where (keep this current):
//
//   - Where the datagram starts: a socket filter on a UDP socket sees
//     skb->data at the UDP header and skb->len = 8 + the datagram, for
//     IPv4, IPv6 and IPv4-mapped on a dual-stack socket alike (Linux 6.18;
//     TestRealSocketVerdicts). BPF_PROG_TEST_RUN pulls a 14-byte Ethernet
//     header off its input, so tests feed Ethernet + UDP + datagram; after
//     an IP EtherType it also demands a whole IP header, so tests use a
//     non-IP one. Test runs take at most about 3.7 KB, so "long" (> 9000
//     bytes) is tested on real sockets only.
//   - SO_TIMESTAMPNS stamps the datagram when loopback queues it and the
//     filter runs when the softirq delivers it: a few µs later when idle
//     (TestRealSocketHistogram logs it), so a skew near a bucket edge can
//     land one bucket apart in the two histograms. The first socket in the
//     system to enable stamps flips a static key from a workqueue; datagrams
//     that arrive before that are stamped at recvmsg time instead, up to ms
//     late. The kernel stamp has no such start-up gap.
//   - Cost per datagram inside the kernel (BenchmarkFilter, 2 vCPU AMD EPYC
//     VM, noisy): about 50–65 ns for garbage and non-RELEASE messages,
//     135–175 ns for a repeated RELEASE, about 0.5 µs for the first RELEASE
//     of a period and 0.9 µs once the LRU map is full and evicting (single
//     timed runs, which add about 80 ns). Loopback receive with a Go reader
//     (BenchmarkReceive, alternating bursts, three runs): 167–204k
//     datagrams/s with the filter against 200–227k without, 2–17 % lower
//     on a shared VM.
//   - Run as root (everything) and as an ordinary user (the kernel tests
//     skip with the reason; kernel.unprivileged_bpf_disabled=2 here). Not
//     run: any non-Linux build beyond compiling.
