package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
)

var docTests = []struct {
	name string
	in   string
	// spans: path (dotted, keys only) -> the exact text of the value
	spans map[string]string
}{
	{"json", `{"a": 1, "b": {"c": [1, 2]}}`, map[string]string{"a": "1", "b": `{"c": [1, 2]}`, "b.c": "[1, 2]"}},
	{"json5 keys and comments", "{\n  // a\n  a: 'x', /* b */ b: +Infinity, // c\n  $c_d: null,\n}",
		map[string]string{"a": "'x'", "b": "+Infinity", "$c_d": "null"}},
	{"escaped key", `{"a\u0062": 0x1F, 'c\'d': "e\"f"}`, map[string]string{"ab": "0x1F", "c'd": `"e\"f"`}},
	{"identifier escape key", `{ \u0061b: .5 }`, map[string]string{"ab": ".5"}},
	{"unicode key", `{ ключ: 1e3 }`, map[string]string{"ключ": "1e3"}},
	{"line continuation", "{ a: 'x\\\r\ny', b: 2 }", map[string]string{"a": "'x\\\r\ny'", "b": "2"}},
	{"comment-like string", `{ a: "// not a comment", b: '/* nor this */' }`, map[string]string{"a": `"// not a comment"`, "b": "'/* nor this */'"}},
	{"nested empty", `{a:{},b:[],c:{d:{}}}`, map[string]string{"a": "{}", "b": "[]", "c.d": "{}"}},
	{"no space before comment", `{a:1/*x*/,b:2//y` + "\n}", map[string]string{"a": "1", "b": "2"}},
	{"duplicate keys", `{a: 1, a: 2}`, map[string]string{}},
}

func TestParseDoc(t *testing.T) {
	for _, tt := range docTests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDoc("t", []byte(tt.in))
			if err != nil {
				t.Fatalf("parseDoc(%q) = %v", tt.in, err)
			}
			for path, want := range tt.spans {
				n := d.root
				for _, k := range strings.Split(path, ".") {
					ms := n.find(k)
					if len(ms) != 1 {
						t.Fatalf("%s: %d members named %q", path, len(ms), k)
					}
					n = ms[0].val
				}
				if got := string(d.src[n.start:n.end]); got != want {
					t.Errorf("span of %s = %q, want %q", path, got, want)
				}
			}
			checkDoc(t, []byte(tt.in))
		})
	}
}

func TestParseDocRefusesWhatAuditRefuses(t *testing.T) {
	for _, in := range []string{`{a: 1,, }`, `{"a" 1}`, `{a: 'x}`, `[1 2]`, `{a: 1} x`, `/* open`, ``} {
		if _, err := parseDoc("t", []byte(in)); err == nil {
			t.Errorf("parseDoc(%q) succeeded, want the audit parser's error", in)
		}
	}
}

// checkDoc asserts that parseDoc accepts exactly what the audit parser
// accepts, and that the values at the recorded spans make the same tree.
func checkDoc(t *testing.T, data []byte) {
	t.Helper()
	want, werr := audit.ParseJSON5("t", data)
	d, err := parseDoc("t", data)
	if (werr == nil) != (err == nil) {
		t.Fatalf("parseDoc(%q) error = %v, audit.ParseJSON5 error = %v", data, err, werr)
	}
	if err != nil {
		return
	}
	got, err := d.decode(d.root)
	if err != nil {
		t.Fatalf("decode(%q) = %v", data, err)
	}
	if !equalTree(got, want) {
		t.Fatalf("parseDoc(%q) spans decode to %v, want %v", data, got, want)
	}
	if d.root.start < 0 || d.root.end > len(data) {
		t.Fatalf("root span [%d,%d) outside %d bytes", d.root.start, d.root.end, len(data))
	}
}

func FuzzParseDoc(f *testing.F) {
	for _, tt := range docTests {
		f.Add([]byte(tt.in))
	}
	files, _ := filepath.Glob("testdata/*.json*")
	more, _ := filepath.Glob("testdata/*/*.json5")
	for _, p := range append(files, more...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		checkDoc(t, data)
	})
}
