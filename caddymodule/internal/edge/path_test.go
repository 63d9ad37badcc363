package edge

import (
	"strings"
	"testing"
)

var dotSegmentTests = []struct {
	in   string
	want bool
}{
	{"/v1/chat/completions", false},
	{"/", false},
	{"", false},
	{"/v1/../sessions/abc/kill", true},
	{"/v1/%2e%2e/sessions/abc/kill", true},
	{"/v1/%2E%2e/sessions", true},
	{"/v1/.%2e/sessions", true},
	{"/v1/%2e./sessions", true},
	{"/v1/./chat", true},
	{"/v1/%2E/chat", true},
	{"/v1/chat/..", true},
	{"/v1/chat/.", true},
	{"..", true},
	{".", true},
	{"/v1\\..\\sessions", true},
	{"\\..", true},
	{"/v1/..%2fsessions", false}, // one segment as WHATWG reads it; the decoded path has the dots
	{"/v1/%252e%252e/x", false},
	{"/v1/...", false},
	{"/v1/..models", false},
	{"/.well-known/x", false},
	{"/v1/%2e%2e%2e/x", false},
	{"/v1/%2/x", false},
	{"/v1/%2", false},
	{"/v1/%2ex", false},
	{"/v1/x.", false},
}

func TestHasDotSegment(t *testing.T) {
	for _, tt := range dotSegmentTests {
		if got := HasDotSegment(tt.in); got != tt.want {
			t.Errorf("HasDotSegment(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPathHasPrefix(t *testing.T) {
	tests := []struct {
		in, prefix string
		want       bool
	}{
		{"/v1/chat", "/v1/", true},
		{"/v1/../sessions", "/v1/", false},
		{"/v1/%2e%2e/sessions", "/v1/", false},
		{"/v1\\chat", "/v1/", false},
		{"/v1%2fchat", "/v1/", false},
		{"/V1/chat", "/v1/", false},
	}
	for _, tt := range tests {
		if got := PathHasPrefix(tt.in, tt.prefix); got != tt.want {
			t.Errorf("PathHasPrefix(%q, %q) = %v, want %v", tt.in, tt.prefix, got, tt.want)
		}
	}
}

// whatwgResolve is a plain reading of the WHATWG path state: segments
// split at '/' and '\', "." dropped and ".." popping (dots also as %2e).
func whatwgResolve(p string) []string {
	var out []string
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		switch strings.ToLower(seg) {
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case ".", "%2e":
		default:
			out = append(out, seg)
		}
	}
	return out
}

// FuzzHasDotSegment: a path without dot segments is left as it is by the
// WHATWG resolution, and one with them is refused.
func FuzzHasDotSegment(f *testing.F) {
	for _, tt := range dotSegmentTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, p string) {
		has := HasDotSegment(p)
		segs := strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' })
		resolved := whatwgResolve(p)
		same := len(segs) == len(resolved)
		for i := 0; same && i < len(segs); i++ {
			same = segs[i] == resolved[i]
		}
		if !has && !same {
			t.Errorf("HasDotSegment(%q) = false, but WHATWG resolves it to %q", p, resolved)
		}
	})
}
