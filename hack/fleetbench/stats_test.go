package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		in   sample
		want summary
	}{
		{sample{3, 1, 2}, summary{Median: 2, Min: 1, Max: 3, Runs: 3}},
		{sample{4, 1, 3, 2}, summary{Median: 2.5, Min: 1, Max: 4, Runs: 4}},
		{sample{5}, summary{Median: 5, Min: 5, Max: 5, Runs: 1}},
		{nil, summary{}},
	} {
		if got := tc.in.summary(); got != tc.want {
			t.Errorf("%v.summary() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestCells(t *testing.T) {
	if got := (sample{1.5, 1, 2}).summary().cell(seconds); got != "1.5s (1s–2s)" {
		t.Errorf("cell = %q", got)
	}
	if got := (sample{2, 2}).summary().cell(seconds); got != "2s" {
		t.Errorf("cell of equal runs = %q", got)
	}
	if got := (summary{}).cell(seconds); got != "–" {
		t.Errorf("cell of no runs = %q", got)
	}
	if got := ratioCell(3, 2, 1.5); got != "1.50 (goal ≤ 1.50: meets goal)" {
		t.Errorf("ratioCell = %q", got)
	}
	if got := ratioCell(3.1, 2, 1.5); got != "1.55 (goal ≤ 1.50: misses goal)" {
		t.Errorf("ratioCell = %q", got)
	}
	if got := ratioCell(1, 0, 1.5); got != "–" {
		t.Errorf("ratioCell of no base = %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	table{Title: "Figure 9", Columns: []string{"N", "time"}, Rows: [][]string{{"1", "a|b"}}, Notes: []string{"why"}}.markdown(&b)
	want := "\n## Figure 9\n\n| N | time |\n|---|---|\n| 1 | a\\|b |\n\n- why\n"
	if b.String() != want {
		t.Errorf("markdown:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestSpliceReport(t *testing.T) {
	doc := []byte("# Benchmarks\n\nhand-written\n\n" + beginMarker + "\nold\n" + endMarker + "\n\nafter\n")
	got := string(spliceReport(doc, []byte("new")))
	want := "# Benchmarks\n\nhand-written\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\nafter\n"
	if got != want {
		t.Errorf("splice:\n%q\nwant\n%q", got, want)
	}
	if got := string(spliceReport([]byte("# B"), []byte("new"))); !strings.HasPrefix(got, "# B\n"+beginMarker+"\nnew\n"+endMarker) {
		t.Errorf("splice without markers: %q", got)
	}
	if again := string(spliceReport([]byte(want), []byte("new"))); again != want {
		t.Errorf("splicing twice changed the document:\n%q", again)
	}
}
