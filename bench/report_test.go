package bench_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/bench"
	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/ptp"
)

// TestTallyAndReport: a Tally turns settled periods into lines and a
// summary that count what the periods hold (a missing receiver, wrong
// keys, an early arrival), and WriteReport writes them as JSON and SVG.
func TestTallyAndReport(t *testing.T) {
	const releaseAt = int64(1e12)
	ms := int64(time.Millisecond)
	loss := bench.NewLoss(0, 1)
	tally := bench.NewTally(loss)
	tally.OnRelease(edge.Report{Period: 0, Lateness: 3 * time.Microsecond,
		Clock: ptp.Reading{Earliest: releaseAt + 3000, Latest: releaseAt + 3000 + 2*400_000, DataAge: 700 * time.Millisecond}})
	tally.OnRelease(edge.Report{Period: 0, Lateness: time.Microsecond, Clock: ptp.Reading{Earliest: releaseAt + 1000, Latest: releaseAt + 1000 + 2*250_000}})
	periods := []bench.Period{
		{Number: 0, ReleaseAt: releaseAt, Arrival: []int64{releaseAt + ms, releaseAt + 3*ms, 0}, KeysOK: []bool{true, false, false}},
		{Number: 1, ReleaseAt: releaseAt, Arrival: []int64{releaseAt - ms, releaseAt + 2*ms, releaseAt + 2*ms}, KeysOK: []bool{true, true, true}},
	}
	line := tally.Add(periods[0])
	if line.Reached != 2 || line.Spread != 2*time.Millisecond || line.Max != 3*time.Millisecond ||
		len(line.Lateness) != 2 || line.Lateness[0] != time.Microsecond {
		t.Errorf("line: %+v", line)
	}
	// Edge by edge, in the order of their lateness.
	if !slices.Equal(line.Bound, []time.Duration{250 * time.Microsecond, 400 * time.Microsecond}) ||
		!slices.Equal(line.ClockAge, []time.Duration{0, 700 * time.Millisecond}) {
		t.Errorf("line's bounds %v, data ages %v", line.Bound, line.ClockAge)
	}
	if s := line.String(3); !strings.Contains(s, "2/3 receivers") || !strings.Contains(s, "within the 200ms target") ||
		!strings.Contains(s, "on bounds ±[250µs 400µs] (clock data [0s 700ms] old)") {
		t.Errorf("line text: %s", s)
	}
	tally.Add(periods[1])
	sum := tally.Summary(periods, 3)
	if sum.Expected != 6 || sum.Deliveries != 5 || sum.Missing() != 1 || sum.WrongKeys != 1 || sum.Early != 1 {
		t.Errorf("summary: %+v", sum)
	}

	dir := filepath.Join(t.TempDir(), "report")
	res := &bench.Result{Config: bench.Config{Receivers: 3, Edges: 2, Period: time.Second}, Periods: periods}
	if err := bench.WriteReport(dir, res, tally.Lines(), sum, tally.Histogram()); err != nil {
		t.Fatal(err)
	}
	var r bench.Report
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err != nil || len(r.Periods) != 2 || r.Summary != sum || r.Receivers != 3 || r.TargetNs != bench.Target {
		t.Fatalf("report.json: %v\n%s", err, data)
	}
	if !bytes.Contains(data, []byte(`"edgeBoundNs": [`)) || !slices.Equal(r.Periods[0].Bound, line.Bound) || !slices.Equal(r.Periods[0].ClockAge, line.ClockAge) {
		t.Errorf("report.json lacks the bounds %v and data ages %v:\n%s", line.Bound, line.ClockAge, data)
	}
	n := uint64(0)
	for _, b := range r.Histogram {
		n += b.Count
	}
	if n != 5 {
		t.Errorf("histogram holds %d arrivals, want 5", n)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "skew.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{ XMLName xml.Name })); err != nil || !bytes.Contains(svg, []byte("(n = 5)")) {
		t.Errorf("skew.svg: %v\n%s", err, svg)
	}
}

func TestParseOffsets(t *testing.T) {
	got, err := bench.ParseOffsets("0, 3ms,-1ms", 3)
	if err != nil || len(got) != 3 || got[1] != 3*time.Millisecond || got[2] != -time.Millisecond {
		t.Errorf("ParseOffsets: %v, %v", got, err)
	}
	if got, err := bench.ParseOffsets("", 2); err != nil || got != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"1ms", "1ms,x"} {
		if _, err := bench.ParseOffsets(bad, 2); err == nil {
			t.Errorf("ParseOffsets(%q, 2) succeeded", bad)
		}
	}
}
