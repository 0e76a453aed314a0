package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/embargo-live/embargo/engine/receiver/skew"
)

// Report is everything a live run measured: report.json.
type Report struct {
	Generated string        `json:"generated"`
	Receivers int           `json:"receivers"`
	Unicast   int           `json:"unicastReceivers"`
	Edges     int           `json:"edges"`
	PeriodNs  time.Duration `json:"periodNs"`
	TargetNs  time.Duration `json:"targetNs"`
	Periods   []PeriodLine  `json:"periods"`
	Summary   Summary       `json:"summary"`
	Histogram []Bucket      `json:"arrivalHistogram"` // arrival − releaseAt, all receivers and periods
	CPUNs     time.Duration `json:"cpuNs"`
}

// Bucket is one non-empty bucket of the arrival histogram.
type Bucket struct {
	LoNs  time.Duration `json:"loNs"`
	HiNs  time.Duration `json:"hiNs"`
	Count uint64        `json:"count"`
}

// WriteReport writes report.json (a Report) and skew.svg (SkewSVG of h)
// into dir, creating it.
func WriteReport(dir string, res *Result, lines []PeriodLine, sum Summary, h skew.Histogram) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := Report{
		Generated: time.Now().UTC().Format(time.RFC3339), Receivers: res.Config.Receivers, Unicast: res.Config.Unicast,
		Edges: res.Config.Edges, PeriodNs: res.Config.Period, TargetNs: Target, Periods: lines, Summary: sum, CPUNs: res.CPU,
	}
	for i, c := range h.Counts {
		if c > 0 {
			lo, hi := skew.BucketBounds(i)
			r.Histogram = append(r.Histogram, Bucket{LoNs: lo, HiNs: hi, Count: c})
		}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "skew.svg"), []byte(SkewSVG(h)), 0o644)
}
