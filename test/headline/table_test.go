package headline

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

func median(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is "median (min–max)" of f over the samples, formatted by format.
func spread(ss []sample, f func(sample) int64, format func(int64) string) string {
	xs := make([]int64, len(ss))
	for i, s := range ss {
		xs[i] = f(s)
	}
	if len(xs) == 1 {
		return format(xs[0])
	}
	return fmt.Sprintf("%s (%s–%s)", format(median(xs)), format(slices.Min(xs)), format(slices.Max(xs)))
}

func medianOf(ss []sample, f func(sample) int64) int64 {
	xs := make([]int64, len(ss))
	for i, s := range ss {
		xs[i] = f(s)
	}
	return median(xs)
}

func count(n int64) string { return fmt.Sprint(n) }

func size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

func seconds(n int64) string { return fmt.Sprintf("%.1f s", time.Duration(n).Seconds()) }

func ratio(a, b int64) string {
	if b == 0 {
		return "∞"
	}
	return fmt.Sprintf("%.1f×", float64(a)/float64(b))
}

// tables prints the two tables of the figure as Markdown.
func tables(s settings, before, after map[int][]sample) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Each cell is the median of %d runs (min–max); a run is the sync of P sidecars and then %d "+
		"changes of a VirtualService, one a second. Ratios are of the medians, before over after.\n\n", s.runs, int(s.window/time.Second))
	w.WriteString("| P | connections before | connections after | ratio | bytes before | bytes after | ratio |\n")
	w.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	conns := func(m sample) int64 { return m.conns }
	all := func(m sample) int64 { return m.bytes() }
	for _, p := range s.ps {
		b, a := before[p], after[p]
		fmt.Fprintf(&w, "| %d | %s | %s | %s | %s | %s | %s |\n", p,
			spread(b, conns, count), spread(a, conns, count), ratio(medianOf(b, conns), medianOf(a, conns)),
			spread(b, all, size), spread(a, all, size), ratio(medianOf(b, all), medianOf(a, all)))
	}
	w.WriteString("\nWhere the bytes went (medians): before, the sidecars' xDS link and the API link (the mesh " +
		"istiod's discovery of the cluster); after, the API link (the operator and that discovery). The sync is " +
		"from the first connection until every sidecar has had CDS, LDS, EDS and RDS; the changes are the window after it.\n\n")
	w.WriteString("| P | before: xDS link | before: API link | after: API link | during the changes, before | after | ratio | sync before | sync after | pushes a sidecar got, before / after |\n")
	w.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range s.ps {
		b, a := before[p], after[p]
		med := func(ss []sample, f func(sample) int64) int64 { return medianOf(ss, f) }
		xds := func(m sample) int64 { return m.xdsBytes }
		api := func(m sample) int64 { return m.apiBytes }
		chg := func(m sample) int64 { return m.changeBytes }
		syn := func(m sample) int64 { return int64(m.sync) }
		push := func(m sample) int64 { return m.pushes }
		fmt.Fprintf(&w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d |\n", p,
			size(med(b, xds)), size(med(b, api)), size(med(a, api)),
			size(med(b, chg)), size(med(a, chg)), ratio(med(b, chg), med(a, chg)),
			seconds(med(b, syn)), seconds(med(a, syn)), med(b, push), med(a, push))
	}
	return w.String()
}

const (
	beginMarker = "<!-- headline results: written by TestHeadline -->"
	endMarker   = "<!-- end of headline results -->"
)

// writeResults replaces the results section of the Markdown file at path.
func writeResults(path, results string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no section between %q and %q", path, beginMarker, endMarker)
	}
	doc = doc[:i+len(beginMarker)] + "\n" + results + "\n" + doc[j:]
	return os.WriteFile(path, []byte(doc), 0o644)
}

func numCPU() int { return runtime.NumCPU() }

func goVersion() string { return runtime.Version() }

// loadAverage is the 1-minute load average, or "unknown" off Linux.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(raw))[0]
}
