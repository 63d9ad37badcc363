package audit

import (
	"strings"
)

// Severity is a finding's severity, spelled as in OpenClaw's JSON.
type Severity string

// Severities, lowest first.
const (
	SeverityInfo     Severity = "info"
	SeverityWarn     Severity = "warn"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: info 0, warn 1, critical 2; unknown values rank
// above critical so a typo can never make a gate more lenient.
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 0
	case SeverityWarn:
		return 1
	case SeverityCritical:
		return 2
	}
	return 3
}

// ParseSeverity accepts "info", "warn"/"warning" and "critical".
func ParseSeverity(s string) (Severity, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "info":
		return SeverityInfo, true
	case "warn", "warning":
		return SeverityWarn, true
	case "critical":
		return SeverityCritical, true
	}
	return "", false
}

// Finding is one audit result, shaped as in `openclaw security audit --json`.
type Finding struct {
	CheckID     string   `json:"checkId"`
	Severity    Severity `json:"severity"`
	Title       string   `json:"title"`
	Detail      string   `json:"detail"`
	Remediation string   `json:"remediation,omitempty"`
}

// SuppressedFinding is a finding removed by security.audit.suppressions.
type SuppressedFinding struct {
	Finding
	Suppression SuppressionInfo `json:"suppression"`
}

// SuppressionInfo carries the configured reason, if any.
type SuppressionInfo struct {
	Reason string `json:"reason,omitempty"`
}

// Summary counts active findings by severity.
type Summary struct {
	Critical int `json:"critical"`
	Warn     int `json:"warn"`
	Info     int `json:"info"`
}

// Report is the audit result in the real CLI's JSON shape. Findings keep the
// order the checks ran in, as the real CLI's JSON does (it does not sort;
// only its text output groups by severity).
type Report struct {
	TS                 int64               `json:"ts"`
	Summary            Summary             `json:"summary"`
	Findings           []Finding           `json:"findings"`
	SuppressedFindings []SuppressedFinding `json:"suppressedFindings,omitempty"`
}

// Blocking returns the findings at or above level whose check IDs are not
// in expect (an expected check ID covers its NewerPrefix form too). The gate
// refuses to serve a gateway while this is non-empty.
func (r Report) Blocking(level Severity, expect []string) []Finding {
	skip := map[string]bool{}
	for _, id := range expect {
		skip[id] = true
	}
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity.Rank() >= level.Rank() && !skip[f.CheckID] && !skip[PlainCheckID(f.CheckID)] {
			out = append(out, f)
		}
	}
	return out
}

func summarize(findings []Finding) Summary {
	var s Summary
	for _, f := range findings {
		switch f.Severity {
		case SeverityCritical:
			s.Critical++
		case SeverityWarn:
			s.Warn++
		default:
			s.Info++
		}
	}
	return s
}

// applySuppressions mirrors OpenClaw's security.audit.suppressions: an entry
// matches on exact checkId and, when given, case-insensitive substrings of
// title and detail. The first matching entry's reason is kept. A
// NewerPrefix finding matches as its plain check ID would.
func applySuppressions(findings []Finding, suppressions []any) ([]Finding, []SuppressedFinding) {
	if len(suppressions) == 0 {
		return findings, nil
	}
	var active []Finding
	var suppressed []SuppressedFinding
	for _, f := range findings {
		var match map[string]any
		for _, s := range suppressions {
			if m := obj(s); m != nil && suppressionMatches(f, m) {
				match = m
				break
			}
		}
		if match == nil {
			active = append(active, f)
			continue
		}
		suppressed = append(suppressed, SuppressedFinding{Finding: f, Suppression: SuppressionInfo{Reason: trimmed(match["reason"])}})
	}
	return active, suppressed
}

func suppressionMatches(f Finding, s map[string]any) bool {
	id := trimmed(s["checkId"])
	if id == "" || id != PlainCheckID(f.CheckID) {
		return false
	}
	if t := strings.ToLower(trimmed(s["titleIncludes"])); t != "" && !strings.Contains(strings.ToLower(f.Title), t) {
		return false
	}
	if d := strings.ToLower(trimmed(s["detailIncludes"])); d != "" && !strings.Contains(strings.ToLower(f.Detail), d) {
		return false
	}
	return true
}
