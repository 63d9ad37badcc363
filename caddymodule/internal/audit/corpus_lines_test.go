package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// knownLineDifferences is knownDifferences for the older release lines,
// keyed by line and then by case. Every line's audit is modelled in full
// over its corpus, so it is empty.
var knownLineDifferences = map[string]map[string]map[string]string{}

// TestCorpusLines holds clawgate's audit, following an older release line,
// to that line's real `openclaw security audit` over the corpus cases
// recorded with it (scripts/audit-corpus.sh with CLAWGATE_OPENCLAW_VERSION),
// and holds it to never being weaker than the newest line's real audit: every
// finding the newest line records for a case is reported, as the line's own
// check at the same or a higher severity or as a NewerPrefix finding.
func TestCorpusLines(t *testing.T) {
	for _, l := range release.Lines()[1:] {
		line := l.Version.String()
		t.Run(line, func(t *testing.T) {
			records, err := filepath.Glob(filepath.Join("..", "release", "testdata", "corpus", line, "*.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(records) < 40 {
				t.Fatalf("%d cases recorded for %s, want at least 40 (run: CLAWGATE_OPENCLAW_VERSION=%s scripts/audit-corpus.sh record)", len(records), line, line)
			}
			var exact, newer int
			for _, rec := range records {
				name := strings.TrimSuffix(filepath.Base(rec), ".json")
				t.Run(name, func(t *testing.T) {
					want := readReport(t, rec)
					newest := readReport(t, filepath.Join("testdata", "corpus", name, "expected.json"))
					_, env := buildCorpusCase(t, filepath.Join("testdata", "corpus", name))
					cfg, err := Load(LoadOptions{Env: EnvMap(env), Home: env["HOME"]})
					if err != nil {
						t.Fatalf("Load: %v", err)
					}
					got := Run(cfg, RunOptions{Line: line})
					var own []Finding
					for _, f := range got.Findings {
						if strings.HasPrefix(f.CheckID, NewerPrefix) {
							newer++
							if !strings.Contains(f.Title, "OpenClaw "+line) || !strings.Contains(f.Detail, release.Newest().Version.String()) {
								t.Errorf("%s does not say which line misses it: %q / %q", f.CheckID, f.Title, f.Detail)
							}
							continue
						}
						own = append(own, f)
					}
					diffs := compareFindings(want.Findings, own, knownLineDifferences[line][name])
					diffs = append(diffs, compareChannelFindings(want.Findings, own)...)
					for _, d := range diffs {
						t.Error(d)
					}
					if len(diffs) == 0 && len(knownLineDifferences[line][name]) == 0 {
						exact++
					}
					for _, w := range newest.Findings {
						if !covers(got.Findings, w) {
							t.Errorf("weaker than %s's real audit: %s %s is not reported", release.Newest().Version, w.CheckID, w.Severity)
						}
					}
				})
			}
			fmt.Printf("TestCorpusLines %s: %d cases, %d agree exactly on (checkId, severity) with the real audit of %s; %d findings kept on from %s's audit\n",
				line, len(records), exact, line, newer, release.Newest().Version)
		})
	}
}

// compareChannelFindings holds the channel plugins' findings (channels.*)
// to the real ones in full, order and text included: their check IDs
// number the warnings by position, and their details name the config path
// to fix.
func compareChannelFindings(want, got []Finding) []string {
	pick := func(fs []Finding) []Finding {
		var out []Finding
		for _, f := range fs {
			if strings.HasPrefix(f.CheckID, "channels.") {
				out = append(out, f)
			}
		}
		return out
	}
	w, g := pick(want), pick(got)
	var diffs []string
	for i := 0; i < max(len(w), len(g)); i++ {
		switch {
		case i >= len(w):
			diffs = append(diffs, fmt.Sprintf("channel finding %d: only clawgate reports %+v", i, g[i]))
		case i >= len(g):
			diffs = append(diffs, fmt.Sprintf("channel finding %d: only the real CLI reports %+v", i, w[i]))
		case w[i] != g[i]:
			diffs = append(diffs, fmt.Sprintf("channel finding %d = %+v, want %+v", i, g[i], w[i]))
		}
	}
	return diffs
}

func readReport(t *testing.T, path string) Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// covers reports whether findings hold w's check (plain or NewerPrefix) at
// w's severity or above.
func covers(findings []Finding, w Finding) bool {
	for _, f := range findings {
		if PlainCheckID(f.CheckID) == w.CheckID && f.Severity.Rank() >= w.Severity.Rank() {
			return true
		}
	}
	return false
}

// compareFindings compares (checkId, severity) multisets; known lists the
// allowed differences ("-" only in want, "+" only in got), each of which
// must still happen.
func compareFindings(want, got []Finding, known map[string]string) []string {
	wantCount, gotCount := map[string]int{}, map[string]int{}
	for _, f := range want {
		wantCount[pairKey(f)]++
	}
	for _, f := range got {
		gotCount[pairKey(f)]++
	}
	used := map[string]bool{}
	var diffs []string
	for _, k := range sortedKeysOf(wantCount) {
		if wantCount[k] > gotCount[k] {
			if known["-"+k] != "" {
				used["-"+k] = true
			} else {
				diffs = append(diffs, "only the real CLI reports "+k)
			}
		}
	}
	for _, k := range sortedKeysOf(gotCount) {
		if gotCount[k] > wantCount[k] {
			if known["+"+k] != "" {
				used["+"+k] = true
			} else {
				diffs = append(diffs, "only clawgate reports "+k)
			}
		}
	}
	for _, k := range sortedKeysOf(known) {
		if !used[k] {
			diffs = append(diffs, "known difference "+k+" no longer happens; remove it")
		}
	}
	return diffs
}
