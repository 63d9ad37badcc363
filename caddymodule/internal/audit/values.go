package audit

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Helpers for walking the untyped config tree. They mirror the JavaScript
// idioms OpenClaw's audit uses (optional chaining, `=== true`, trimmed
// optional strings), so the checks read close to the code they follow.

// get walks nested objects; any missing or non-object step yields nil.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// obj returns v as an object, or nil.
func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// arr returns v as an array, or nil.
func arr(v any) []any {
	a, _ := v.([]any)
	return a
}

// isArr reports whether v is an array.
func isArr(v any) bool {
	_, ok := v.([]any)
	return ok
}

// str returns v if it is a string.
func str(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// strOr returns v if it is a string, otherwise def.
func strOr(v any, def string) string {
	if s, ok := v.(string); ok {
		return s
	}
	return def
}

// trimmed is OpenClaw's normalizeOptionalString: a trimmed non-blank string,
// or "" for anything else.
func trimmed(v any) string {
	s, _ := v.(string)
	return strings.TrimSpace(s)
}

// isTrue reports whether v is the boolean true (JavaScript `=== true`).
func isTrue(v any) bool {
	b, ok := v.(bool)
	return ok && b
}

// isFalse reports whether v is the boolean false (JavaScript `=== false`).
func isFalse(v any) bool {
	b, ok := v.(bool)
	return ok && !b
}

// truthy follows JavaScript truthiness for JSON values.
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case float64:
		return t != 0 && !math.IsNaN(t)
	}
	return true
}

// jsString renders a JSON value as JavaScript's String() would.
func jsString(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case float64:
		if math.IsInf(t, 1) {
			return "Infinity"
		}
		if math.IsInf(t, -1) {
			return "-Infinity"
		}
		if t == math.Trunc(t) && math.Abs(t) < 1e21 {
			return strconv.FormatFloat(t, 'f', -1, 64)
		}
		return strconv.FormatFloat(t, 'g', -1, 64)
	case []any:
		parts := make([]string, len(t))
		for i, e := range t {
			if e != nil {
				parts[i] = jsString(e)
			}
		}
		return strings.Join(parts, ",")
	case map[string]any:
		return "[object Object]"
	}
	return fmt.Sprint(v)
}

// stringEntries is OpenClaw's normalizeStringEntries: String() each entry,
// trim, drop blanks. Non-arrays yield nothing.
func stringEntries(v any) []string {
	var out []string
	for _, e := range arr(v) {
		if s := strings.TrimSpace(jsString(e)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// stringItems returns the string elements of an array, untrimmed.
func stringItems(v any) []string {
	var out []string
	for _, e := range arr(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// keys returns an object's keys in a stable order. JavaScript keeps
// insertion order, which a Go map cannot; sorting keeps reports
// deterministic at the cost of detail-line order on multi-key objects.
//
// It is a plain loop, not slices.Sorted(maps.Keys(m)): the audit calls it on
// every object it walks, and the iterator form allocates more.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func uniqueStrings(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func bulletList(items []string) string {
	lines := make([]string, len(items))
	for i, s := range items {
		lines[i] = "- " + s
	}
	return strings.Join(lines, "\n")
}
