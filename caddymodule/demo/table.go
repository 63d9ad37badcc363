package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Column widths the table wraps its two long columns to, so it fits a
// terminal of about 120 columns.
const (
	happenedWidth = 46
	expectedWidth = 28
)

// WriteTable prints the table of what happened, which backend answered, and
// the verdict.
func WriteTable(w io.Writer, res *Result) {
	switch res.Backend {
	case BackendOpenClaw:
		fmt.Fprintf(w, "backend: the real OpenClaw gateway (%s)\n\n", res.BackendDesc)
	case BackendStandIn:
		fmt.Fprintf(w, "backend: STAND-IN, not OpenClaw (%s): a tiny server that answers like the gateway and echoes what clawgate forwards\n", res.BackendDesc)
		if res.InstallHint != "" {
			fmt.Fprintf(w, "         for the real gateway: %s\n", res.InstallHint)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tWHO\tWHAT HAPPENED\tEXPECTED\tOK")
	for _, s := range res.Steps {
		happened := wrap(s.Happened, happenedWidth)
		expected := wrap(s.Expected, expectedWidth)
		mark := "✓"
		if !s.OK {
			mark = "✗"
		}
		for i := range max(len(happened), len(expected)) {
			var step, who, ok string
			if i == 0 {
				step, who, ok = s.Name, s.Who, mark
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", step, who, at(happened, i), at(expected, i), ok)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	bad := 0
	for _, s := range res.Steps {
		if !s.OK {
			bad++
		}
	}
	timing := fmt.Sprintf("setup %s, tour %s, cleanup %s", secs(res.Setup), secs(res.Tour), secs(res.Cleanup))
	if res.OK() {
		fmt.Fprintf(w, "✓ all %d steps behaved as expected (%s)\n", len(res.Steps), timing)
	} else {
		fmt.Fprintf(w, "✗ %d of %d steps did not behave as expected (%s)\n", bad, len(res.Steps), timing)
	}
}

// WriteJSON prints res as indented JSON with an "ok" verdict.
func WriteJSON(w io.Writer, res *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK bool `json:"ok"`
		*Result
	}{res.OK(), res})
}

// wrap breaks s into lines of at most width runes at spaces; a word longer
// than width gets a line of its own.
func wrap(s string, width int) []string {
	var lines []string
	var cur []rune
	for _, word := range strings.Fields(s) {
		wr := []rune(word)
		if len(cur) > 0 && len(cur)+1+len(wr) > width {
			lines = append(lines, string(cur))
			cur = nil
		}
		if len(cur) > 0 {
			cur = append(cur, ' ')
		}
		cur = append(cur, wr...)
	}
	if len(cur) > 0 || len(lines) == 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}
