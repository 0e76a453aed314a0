package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	const at = 1000
	r := summarize(PeerNATS, at, []subscriberReport{
		// The third subscriber's kernel stamp precedes releaseAt: early,
		// though user space had it after.
		{Got: []int64{1005, 0, 1001}, Kernel: []int64{1004, 0, 999}, CPU: 10, RSS0: 100, PeakRSS: 400},
		{Got: []int64{1003, 0}, Corrupt: 1, CPU: 5, RSS0: 100, PeakRSS: 300},
	})
	want := Release{
		Name: "BenchmarkRelease/variant=nats/subscribers=5", Variant: PeerNATS, Subscribers: 5, Delivered: 3, Corrupt: 1, Early: 1,
		First: 1, Last: 5, KernelLast: 4, SkewP50: 2, SkewP99: 4, SkewMax: 4, KernelSkewP99: 5, SubCPU: 15, SubPeakRSS: 700, RecvMemPerSub: 100,
	}
	if r != want {
		t.Errorf("summarize:\n got %+v\nwant %+v", r, want)
	}

	none := summarize(PeerWebSocket, at, []subscriberReport{{Got: []int64{0, 0}, RSS0: 500, PeakRSS: 400}})
	if none.Delivered != 0 || none.Last != 0 || none.SkewMax != 0 || none.RecvMemPerSub != 0 || none.Subscribers != 2 {
		t.Errorf("nothing delivered: %+v", none)
	}
}

func TestWriteReleaseTable(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var runs []Release
	for i, last := range []int{10, 30, 20} {
		runs = append(runs,
			Release{Variant: ReleaseMulticast, Last: ms(last), CPU: ms(4), SkewP99: ms(1)},
			Release{Variant: PeerNATS, Last: ms(100 * (i + 1)), CPU: ms(2), SkewP99: 0})
	}
	var b bytes.Buffer
	WriteReleaseTable(&b, runs)
	var row string
	for l := range strings.Lines(b.String()) {
		if strings.HasPrefix(l, "embargo-multicast ÷ nats") {
			row = l
		}
	}
	// Medians 20ms ÷ 200ms, 4ms ÷ 2ms; a peer's 0 has no ratio.
	f := strings.Fields(row)
	if len(f) != 3+len(releaseFigures) || f[3] != "0.1×" || f[3+6] != "2×" || f[3+3] != "—" {
		t.Errorf("ratio row %q in:\n%s", row, b.String())
	}
	if strings.Contains(b.String(), "websocket") || strings.Contains(b.String(), "unicast") {
		t.Errorf("ratios for variants that did not run:\n%s", b.String())
	}

	b.Reset()
	WriteReleaseTable(&b, runs[:1])
	if strings.Contains(b.String(), "÷") {
		t.Errorf("ratios without a peer:\n%s", b.String())
	}
}

func TestReleaseBenchstat(t *testing.T) {
	r := Release{Name: "BenchmarkRelease/variant=nats/subscribers=5", Last: 7, KernelLast: 6, SkewP50: 1, SkewP99: 2, SkewMax: 3, KernelSkewP99: 4, Early: 1, CPU: 9}
	got := r.Benchstat()
	if !strings.HasPrefix(got, r.Name+" 1 7 last-ns 6 kern-last-ns 1 skew-p50-ns 2 skew-p99-ns 3 skew-max-ns 4 kern-skew-p99-ns 1 early 9 cpu-ns ") || !strings.HasSuffix(got, "recv-B/sub 0 peak-B 0 sub-peak-B\n") {
		t.Errorf("benchstat line %q", got)
	}
}

func TestReleaseConfigErrors(t *testing.T) {
	type bad struct {
		cfg  ReleaseConfig
		want string
	}
	cases := []bad{
		{ReleaseConfig{Variant: "carrier-pigeon", Subscribers: 1}, `release variant "carrier-pigeon": want one of embargo-multicast,`},
		{ReleaseConfig{Variant: PeerNATS}, "at least 1 subscriber"},
	}
	if fileLimit() > 0 { // known on Linux
		cases = append(cases, bad{ReleaseConfig{Variant: PeerNATS, Subscribers: 1 << 40}, "open files in a process; the limit is"})
	}
	for _, c := range cases {
		if err := c.cfg.defaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	cfg := ReleaseConfig{Variant: PeerWebSocket, Subscribers: 3, Procs: 8}
	if err := cfg.defaults(); err != nil || cfg.Procs != 3 || len(cfg.Resource) != 64 || cfg.Lead != 300*time.Millisecond+1500*time.Microsecond {
		t.Errorf("defaults: %v %+v", err, cfg)
	}
}
