package bench

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/embargo-live/embargo/engine/edge"
	"github.com/embargo-live/embargo/engine/receiver/skew"
)

// Target is the fairness objective: every client within 200 ms.
const Target = 200 * time.Millisecond

// PeriodLine is one period's figures, as printed and reported.
type PeriodLine struct {
	Period   uint64          `json:"period"`
	Lateness []time.Duration `json:"edgeLatenessNs"` // each edge's first send past releaseAt, earliest bound
	// Bound and ClockAge are, edge by edge as in Lateness, the clock's
	// bound (half-width) at the commit-wait and the age of the data
	// behind it (a time daemon's last answer; 0 when the clock does not
	// say).
	Bound     []time.Duration `json:"edgeBoundNs"`
	ClockAge  []time.Duration `json:"edgeClockDataAgeNs"`
	Reached   int             `json:"receiversReached"`
	P50       time.Duration   `json:"arrivalP50Ns"` // arrival − releaseAt across receivers
	P99       time.Duration   `json:"arrivalP99Ns"`
	Max       time.Duration   `json:"arrivalMaxNs"`
	Spread    time.Duration   `json:"skewNs"` // max − min arrival
	Recovered int64           `json:"datagramsLostAndRecovered"`
}

// String is the period's line for receivers receivers.
func (l PeriodLine) String(receivers int) string {
	verdict := "within"
	if l.Spread > Target {
		verdict = "OVER"
	}
	clock := fmt.Sprintf("on bounds ±%v", l.Bound)
	if slices.ContainsFunc(l.ClockAge, func(d time.Duration) bool { return d != 0 }) {
		clock += fmt.Sprintf(" (clock data %v old)", roundAll(l.ClockAge, time.Millisecond))
	}
	return fmt.Sprintf("period %d: edges sent at releaseAt+%v %s; %d/%d receivers; arrival releaseAt+ p50 %v p99 %v max %v; skew %v (%s the %v target); %d datagrams lost, recovered by FEC and repetition",
		l.Period, l.Lateness, clock, l.Reached, receivers, l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond),
		l.Spread.Round(time.Microsecond), verdict, Target, l.Recovered)
}

// Summary closes a live run.
type Summary struct {
	Deliveries int   `json:"deliveries"`
	Expected   int   `json:"expected"`
	Early      int   `json:"early"`
	WrongKeys  int   `json:"wrongKeys"`
	Lost       int64 `json:"datagramsLost"`
	Seen       int64 `json:"datagramsSeen"`
	// Quantiles of arrival − releaseAt: histogram bucket upper bounds.
	P50 time.Duration `json:"arrivalP50Ns"`
	P99 time.Duration `json:"arrivalP99Ns"`
	Max time.Duration `json:"arrivalMaxNs"`
}

// Missing is how many deliveries were expected and not made.
func (s Summary) Missing() int { return s.Expected - s.Deliveries }

func (s Summary) String() string {
	return fmt.Sprintf("summary: %d/%d deliveries, %d early, %d wrong keys; %d of %d datagrams lost; arrival − releaseAt p50 ≤ %v, p99 ≤ %v, max ≤ %v (target: all within %v); never early",
		s.Deliveries, s.Expected, s.Early, s.WrongKeys, s.Lost, s.Seen, s.P50, s.P99, s.Max, Target)
}

// Tally turns a live run's reports into per-period lines as the periods
// settle: give Config.OnRelease to OnRelease and each settled period to
// Add. It is safe for concurrent use.
type Tally struct {
	loss *Loss // may be nil

	mu       sync.Mutex
	reports  map[uint64][]edge.Report // period → each edge's release report
	all      skew.Histogram
	lines    []PeriodLine
	lastLost int64
}

// NewTally returns a Tally that attributes loss's drops (loss may be nil)
// to the period that settled after them.
func NewTally(loss *Loss) *Tally {
	return &Tally{loss: loss, reports: map[uint64][]edge.Report{}}
}

// OnRelease records an edge's release report.
func (t *Tally) OnRelease(r edge.Report) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reports[r.Period] = append(t.reports[r.Period], r)
}

// Add records a settled period and returns its line.
func (t *Tally) Add(p Period) PeriodLine {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lost int64
	if t.loss != nil {
		lost = t.loss.Lost() - t.lastLost
		t.lastLost += lost
	}
	l := p.Lateness()
	slices.Sort(l)
	for _, d := range l {
		t.all.Add(d)
	}
	line := PeriodLine{Period: p.Number, Reached: len(l),
		P50: Percentile(l, 50), P99: Percentile(l, 99), Max: Percentile(l, 100), Spread: p.Skew(), Recovered: lost}
	rs := slices.SortedFunc(slices.Values(t.reports[p.Number]), func(a, b edge.Report) int { return cmp.Compare(a.Lateness, b.Lateness) })
	for _, r := range rs {
		line.Lateness = append(line.Lateness, r.Lateness)
		line.Bound = append(line.Bound, r.Clock.Uncertainty())
		line.ClockAge = append(line.ClockAge, r.Clock.DataAge)
	}
	t.lines = append(t.lines, line)
	return line
}

// Lines returns the lines of the periods settled so far.
func (t *Tally) Lines() []PeriodLine {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.lines)
}

// Histogram is arrival − releaseAt over every receiver and settled period.
func (t *Tally) Histogram() skew.Histogram {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.all
}

// Summary sums up periods for receivers receivers.
func (t *Tally) Summary(periods []Period, receivers int) Summary {
	h := t.Histogram()
	s := Summary{Expected: len(periods) * receivers, P50: h.Quantile(0.5), P99: h.Quantile(0.99), Max: h.Quantile(1)}
	if t.loss != nil {
		s.Lost, s.Seen = t.loss.Lost(), t.loss.Seen()
	}
	missing := 0
	for _, p := range periods {
		missing += p.Missing()
		s.Early += p.Early()
		s.WrongKeys += p.WrongKeys()
	}
	s.Deliveries = s.Expected - missing
	return s
}

func roundAll(ds []time.Duration, to time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(to)
	}
	return out
}
