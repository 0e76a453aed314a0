package bench

import (
	"fmt"
	"math"
	"strings"

	"github.com/embargo-live/embargo/engine/receiver/skew"
)

// SkewSVG draws h, the arrival histogram (arrival − releaseAt), on a log
// time axis from 1 µs to 10 s with the 200 ms target as a red line; early
// arrivals get a bar left of the axis.
func SkewSVG(h skew.Histogram) string {
	const w, ht, left, right, top, bottom = 760.0, 360.0, 60.0, 20.0, 40.0, 50.0
	const lo, hi = 1e3, 1e10 // ns: 1 µs … 10 s
	x := func(ns float64) float64 {
		ns = math.Min(math.Max(ns, lo), hi)
		return left + (w-left-right)*(math.Log10(ns)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	var maxCount uint64 = 1
	for _, c := range h.Counts {
		maxCount = max(maxCount, c)
	}
	y := func(c uint64) float64 { return top + (ht-top-bottom)*(1-float64(c)/float64(maxCount)) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, ht)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14">Arrival − releaseAt, every receiver and period (n = %d)</text>`+"\n", left, h.Total())
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		blo, bhi := skew.BucketBounds(i)
		x0, x1 := x(math.Max(float64(blo), lo)), x(math.Min(float64(bhi), hi))
		if i == 0 { // early: a bar left of the axis, which must stay empty
			x0, x1 = left-12, left-4
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#3b6ea8"><title>[%v, %v): %d</title></rect>`+"\n",
			x0, y(c), math.Max(x1-x0-0.5, 1), ht-bottom-y(c), blo, bhi, c)
	}
	// Axes, decade ticks, the target.
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, ht-bottom, w-right, ht-bottom)
	for _, t := range []struct {
		ns    float64
		label string
	}{{1e3, "1µs"}, {1e4, "10µs"}, {1e5, "100µs"}, {1e6, "1ms"}, {1e7, "10ms"}, {1e8, "100ms"}, {1e9, "1s"}, {1e10, "10s"}} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="black"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			x(t.ns), ht-bottom, x(t.ns), ht-bottom+5, x(t.ns), ht-bottom+20, t.label)
	}
	tx := x(float64(Target))
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="red" stroke-dasharray="6 4"/><text x="%.1f" y="%.0f" fill="red">200 ms target</text>`+"\n",
		tx, top, tx, ht-bottom, tx+4, top+14)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">count (max %d)</text>`+"\n", 4.0, top-8, maxCount)
	b.WriteString("</svg>\n")
	return b.String()
}
