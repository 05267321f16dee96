package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// sample is the values of one quantity over several runs.
type sample []float64

// summary is a sample's median, min and max.
type summary struct {
	Median, Min, Max float64
	Runs             int
}

func (s sample) summary() summary {
	if len(s) == 0 {
		return summary{}
	}
	v := slices.Clone(s)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return summary{Median: med, Min: v[0], Max: v[len(v)-1], Runs: len(v)}
}

// unit formats one value of a column.
type unit func(float64) string

func seconds(v float64) string {
	return time.Duration(v * float64(time.Second)).Round(10 * time.Millisecond).String()
}

func mib(v float64) string   { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func count(v float64) string { return fmt.Sprintf("%.0f", v) }
func ratio(v float64) string { return fmt.Sprintf("%.2f", v) }

// cell formats a summary: the median, and the range when the runs differ.
func (s summary) cell(u unit) string {
	if s.Runs == 0 {
		return "–"
	}
	if s.Runs == 1 || s.Min == s.Max {
		return u(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", u(s.Median), u(s.Min), u(s.Max))
}

// table is one figure's result.
type table struct {
	Title   string
	Columns []string
	Rows    [][]string
	// Notes follow the table: the goal, what limited the figure.
	Notes []string
}

// ratioCell says a ratio of medians against its goal (at most goal).
func ratioCell(num, den, goal float64) string {
	if den == 0 {
		return "–"
	}
	r := num / den
	verdict := "meets goal"
	if r > goal {
		verdict = "misses goal"
	}
	return fmt.Sprintf("%s (goal ≤ %s: %s)", ratio(r), ratio(goal), verdict)
}

// text writes the table for a terminal.
func (t table) text(w io.Writer) {
	widths := make([]int, len(t.Columns))
	for i, c := range t.Columns {
		widths[i] = len([]rune(c))
	}
	for _, r := range t.Rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		parts := make([]string, len(cells))
		for i, c := range cells {
			parts[i] = c + strings.Repeat(" ", widths[i]-len([]rune(c)))
		}
		_, _ = fmt.Fprintln(w, strings.TrimRight(strings.Join(parts, "  "), " "))
	}
	_, _ = fmt.Fprintf(w, "\n== %s\n", t.Title)
	line(t.Columns)
	for _, r := range t.Rows {
		line(r)
	}
	for _, n := range t.Notes {
		_, _ = fmt.Fprintf(w, "  %s\n", n)
	}
}

// markdown writes the table as a Markdown section.
func (t table) markdown(w io.Writer) {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	row := func(cells []string) {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = esc(c)
		}
		_, _ = fmt.Fprintf(w, "| %s |\n", strings.Join(out, " | "))
	}
	_, _ = fmt.Fprintf(w, "\n## %s\n\n", t.Title)
	row(t.Columns)
	seps := make([]string, len(t.Columns))
	for i := range seps {
		seps[i] = "---"
	}
	_, _ = fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
	for _, r := range t.Rows {
		row(r)
	}
	if len(t.Notes) > 0 {
		_, _ = fmt.Fprintln(w)
	}
	for _, n := range t.Notes {
		_, _ = fmt.Fprintf(w, "- %s\n", n)
	}
}
