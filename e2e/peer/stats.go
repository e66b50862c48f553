package peer

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Percentile is the q-quantile (0 ≤ q ≤ 1) of xs, interpolated linearly between the closest
// ranks (the usual definition, numpy's default); NaN for no samples.
func Percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}

// Ratios pairs a[i] with b[i] and returns a[i]/b[i] for every pair where b[i] is not zero: the
// per-sample ratios of two measurements taken at the same time.
func Ratios(a, b []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// Result is one metric at one size: kube-proxy's figure, Ganglion's, and the per-sample ratios
// (Ganglion over kube-proxy, from paired samples) that show how far the ratio moves. KubeProxy is
// NaN for a figure kube-proxy has no counterpart of (the brain).
type Result struct {
	Services            int
	Name                string
	KubeProxy, Ganglion float64
	Spread              []float64
}

// Ratio is Ganglion's figure over kube-proxy's (NaN when there is no pair).
func (r Result) Ratio() float64 {
	if math.IsNaN(r.KubeProxy) || r.KubeProxy == 0 {
		return math.NaN()
	}
	return r.Ganglion / r.KubeProxy
}

// Line is the result as a BENCH line.
func (r Result) Line() string {
	return fmt.Sprintf("BENCH peer services=%d metric=%s kubeproxy=%s ganglion=%s ratio=%s p10=%s p90=%s samples=%d",
		r.Services, r.Name, num(r.KubeProxy), num(r.Ganglion), num(r.Ratio()),
		num(Percentile(r.Spread, 0.1)), num(Percentile(r.Spread, 0.9)), len(r.Spread))
}

// num prints a figure with three significant digits or so, "-" for none.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// Table prints results as a Markdown table: a row per metric, per size kube-proxy, Ganglion and
// the ratio with its p10–p90 spread; rows and sizes in the order they first appear.
func Table(results []Result) string {
	var names []string
	var sizes []int
	at := map[string]map[int]Result{}
	for _, r := range results {
		if !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
			at[r.Name] = map[int]Result{}
		}
		if !slices.Contains(sizes, r.Services) {
			sizes = append(sizes, r.Services)
		}
		at[r.Name][r.Services] = r
	}
	var b strings.Builder
	b.WriteString("| metric |")
	for _, n := range sizes {
		fmt.Fprintf(&b, " %s svc: kube-proxy | Ganglion | ratio (p10–p90) |", thousands(n))
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("--:|--:|:-:|", len(sizes)))
	b.WriteString("\n")
	for _, name := range names {
		fmt.Fprintf(&b, "| %s |", name)
		for _, n := range sizes {
			r, ok := at[name][n]
			if !ok {
				b.WriteString(" | | |")
				continue
			}
			ratio := num(r.Ratio())
			if ratio != "-" && len(r.Spread) > 1 {
				ratio += fmt.Sprintf(" (%s–%s)", num(Percentile(r.Spread, 0.1)), num(Percentile(r.Spread, 0.9)))
			}
			fmt.Fprintf(&b, " %s | %s | %s |", num(r.KubeProxy), num(r.Ganglion), ratio)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// thousands writes n with comma separators: 10000 → 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
