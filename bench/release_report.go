package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Release is one release's figures (durations in ns in JSON). Receive
// stamps are the subscribers' own, in user space: the instant the resource
// was in a subscriber's hands, by the same host clock for every variant.
type Release struct {
	Name        string `json:"name"`
	Variant     string `json:"variant"`
	Subscribers int    `json:"subscribers"`
	Placement   string `json:"placement"`
	// Delivered counts subscribers that got the byte-exact resource,
	// Corrupt those that got other bytes.
	Delivered int `json:"delivered"`
	Corrupt   int `json:"corrupt"`
	// Early counts subscribers whose resource arrived before releaseAt
	// (by the kernel's stamp where the variant has one, else user space).
	Early int `json:"early"`
	// PublishLate is how late past releaseAt the sender began to send (by
	// its clock's earliest bound), FanOut how long handing the resource to
	// every subscriber's connection took.
	PublishLate time.Duration `json:"publishLateNs"`
	FanOut      time.Duration `json:"fanOutNs"`
	// Datagrams counts embargo's datagrams handed to the kernel for the
	// announcement and the release (a unicast server's, one per
	// subscriber; a group's once, though loopback delivers a copy to each
	// member); 0 for the peers, which write to TCP.
	Datagrams uint64 `json:"datagrams,omitempty"`
	// First and Last are the first and the last subscriber's receive −
	// releaseAt.
	First time.Duration `json:"firstNs"`
	Last  time.Duration `json:"lastNs"`
	// KernelLast is the latest kernel receive stamp of what carried the
	// resource (embargo: the RELEASE datagram; peers: the TCP segment read
	// last before the message was whole) − releaseAt: Last − KernelLast is
	// the subscribers' own processing.
	KernelLast time.Duration `json:"kernelLastNs,omitempty"`
	// Skew is each subscriber's receive − the first receive: its median,
	// 99th percentile and maximum over subscribers.
	SkewP50 time.Duration `json:"skewP50Ns"`
	SkewP99 time.Duration `json:"skewP99Ns"`
	SkewMax time.Duration `json:"skewMaxNs"`
	// KernelSkewP99 is the 99th percentile of the same by the kernel's
	// stamps (each − the first), where the variant has them: the arrival
	// skew of DESIGN.md, before the subscribers' own work.
	KernelSkewP99 time.Duration `json:"kernelSkewP99Ns,omitempty"`
	// CPU is the sender process's CPU from scheduling the release to the
	// last report; SubCPU the subscriber processes' from ready to report.
	CPU    time.Duration `json:"cpuNs"`
	SubCPU time.Duration `json:"subscriberCpuNs"`
	// PeakRSS is the sender process's peak resident memory during the run
	// (since it began where /proc/self/clear_refs cannot restart the
	// kernel's record); SubPeakRSS the sum of the subscriber processes'
	// peaks.
	PeakRSS    int64 `json:"peakRssBytes"`
	SubPeakRSS int64 `json:"subscriberPeakRssBytes"`
	// SendMemPerSub is the sender process's resident growth from before
	// its server opened to every subscription held (each after a GC that
	// hands free memory back), per subscriber;
	// RecvMemPerSub the subscriber processes' peak growth per subscriber.
	SendMemPerSub int64 `json:"sendMemPerSubscriberBytes"`
	RecvMemPerSub int64 `json:"recvMemPerSubscriberBytes"`
}

// summarize turns the subscriber processes' reports of one release at
// releaseAt into its figures (all but the sender's).
func summarize(variant string, releaseAt int64, reports []subscriberReport) Release {
	r := Release{Variant: variant}
	var got, kernel []int64
	var rss0 int64
	for _, rep := range reports {
		r.Subscribers += len(rep.Got)
		r.Corrupt += rep.Corrupt
		r.SubCPU += rep.CPU
		r.SubPeakRSS += rep.PeakRSS
		rss0 += rep.RSS0
		for i, at := range rep.Got {
			if at == 0 {
				continue
			}
			got = append(got, at)
			first := at
			if i < len(rep.Kernel) && rep.Kernel[i] != 0 {
				first = min(first, rep.Kernel[i])
			}
			if first < releaseAt {
				r.Early++
			}
			if i < len(rep.Kernel) && rep.Kernel[i] != 0 {
				r.KernelLast = max(r.KernelLast, time.Duration(rep.Kernel[i]-releaseAt))
				kernel = append(kernel, rep.Kernel[i])
			}
		}
	}
	r.Name = fmt.Sprintf("BenchmarkRelease/variant=%s/subscribers=%d", variant, r.Subscribers)
	r.Delivered = len(got)
	if r.Subscribers > 0 {
		r.RecvMemPerSub = max(r.SubPeakRSS-rss0, 0) / int64(r.Subscribers)
	}
	if len(got) == 0 {
		return r
	}
	slices.Sort(got)
	r.First, r.Last = time.Duration(got[0]-releaseAt), time.Duration(got[len(got)-1]-releaseAt)
	skews := make([]time.Duration, len(got))
	for i, at := range got {
		skews[i] = time.Duration(at - got[0])
	}
	r.SkewP50, r.SkewP99, r.SkewMax = Percentile(skews, 50), Percentile(skews, 99), Percentile(skews, 100)
	r.KernelSkewP99 = skewP99(kernel)
	return r
}

// skewP99 is the 99th percentile of each stamp − the first (0 if none).
func skewP99(stamps []int64) time.Duration {
	if len(stamps) == 0 {
		return 0
	}
	first := slices.Min(stamps)
	skews := make([]time.Duration, len(stamps))
	for i, at := range stamps {
		skews[i] = time.Duration(at - first)
	}
	slices.Sort(skews)
	return Percentile(skews, 99)
}

// Benchstat is the release as one benchstat-compatible line.
func (r Release) Benchstat() string {
	return fmt.Sprintf("%s 1 %d last-ns %d kern-last-ns %d skew-p50-ns %d skew-p99-ns %d skew-max-ns %d kern-skew-p99-ns %d early %d cpu-ns %d sub-cpu-ns %d send-B/sub %d recv-B/sub %d peak-B %d sub-peak-B\n",
		r.Name, r.Last, r.KernelLast, r.SkewP50, r.SkewP99, r.SkewMax, r.KernelSkewP99, r.Early, r.CPU, r.SubCPU, r.SendMemPerSub, r.RecvMemPerSub, r.PeakRSS, r.SubPeakRSS)
}

// releaseFigures are the figures WriteReleaseTable compares, by name.
var releaseFigures = []struct {
	name string
	of   func(Release) float64
}{
	{"last", func(r Release) float64 { return float64(r.Last) }},
	{"kern-last", func(r Release) float64 { return float64(r.KernelLast) }},
	{"skew-p50", func(r Release) float64 { return float64(r.SkewP50) }},
	{"skew-p99", func(r Release) float64 { return float64(r.SkewP99) }},
	{"kern-skew99", func(r Release) float64 { return float64(r.KernelSkewP99) }},
	{"skew-max", func(r Release) float64 { return float64(r.SkewMax) }},
	{"cpu", func(r Release) float64 { return float64(r.CPU) }},
	{"sub-cpu", func(r Release) float64 { return float64(r.SubCPU) }},
	{"send-B/sub", func(r Release) float64 { return float64(r.SendMemPerSub) }},
	{"recv-B/sub", func(r Release) float64 { return float64(r.RecvMemPerSub) }},
}

// medianOf is the median of f over the runs of variant v (0 if none).
func medianOf(runs []Release, v string, f func(Release) float64) float64 {
	var xs []float64
	for _, r := range runs {
		if r.Variant == v {
			xs = append(xs, f(r))
		}
	}
	slices.Sort(xs)
	return Percentile(xs, 50)
}

// WriteReleaseTable writes one row per release, then for each embargo
// variant and each peer in runs the ratio embargo ÷ peer of the medians of
// every figure (below 1: embargo's is smaller).
func WriteReleaseTable(w io.Writer, runs []Release) {
	fmt.Fprintf(w, "%-20s %7s %9s %7s %5s %10s %10s %10s %10s %10s %10s %10s %10s %11s %9s %9s %10s %10s %8s %8s\n",
		"variant", "subs", "delivered", "corrupt", "early", "pub-late", "fan-out", "first", "last", "kern-last", "skew-p50", "skew-p99", "skew-max", "kern-skew99", "cpu", "sub-cpu", "send-B/sub", "recv-B/sub", "peak-MiB", "sub-MiB")
	us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	for _, r := range runs {
		fmt.Fprintf(w, "%-20s %7d %9d %7d %5d %10v %10v %10v %10v %10v %10v %10v %10v %11v %9v %9v %10d %10d %8d %8d\n",
			r.Variant, r.Subscribers, r.Delivered, r.Corrupt, r.Early, us(r.PublishLate), us(r.FanOut), us(r.First), us(r.Last), us(r.KernelLast),
			us(r.SkewP50), us(r.SkewP99), us(r.SkewMax), us(r.KernelSkewP99), r.CPU.Round(time.Millisecond), r.SubCPU.Round(time.Millisecond), r.SendMemPerSub, r.RecvMemPerSub, r.PeakRSS>>20, r.SubPeakRSS>>20)
	}
	var ours, peers []string
	for _, v := range ReleaseVariants {
		if !slices.ContainsFunc(runs, func(r Release) bool { return r.Variant == v }) {
			continue
		}
		if strings.HasPrefix(v, "embargo") {
			ours = append(ours, v)
		} else {
			peers = append(peers, v)
		}
	}
	if len(ours) == 0 || len(peers) == 0 {
		return
	}
	fmt.Fprintf(w, "\nembargo ÷ peer, medians of runs (below 1: embargo's is smaller)\n%-42s", "")
	for _, f := range releaseFigures {
		fmt.Fprintf(w, " %11s", f.name)
	}
	fmt.Fprintln(w)
	for _, o := range ours {
		for _, p := range peers {
			fmt.Fprintf(w, "%-42s", o+" ÷ "+p)
			for _, f := range releaseFigures {
				fmt.Fprintf(w, " %11s", ratio(medianOf(runs, o, f.of), medianOf(runs, p, f.of)))
			}
			fmt.Fprintln(w)
		}
	}
}

// ratio is a ÷ b to three figures, or "—" when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.3g×", a/b)
}
