package json5

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var treeTests = []struct {
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
	{"literals", `{t: true, f: false, n: null, nan: -NaN}`, map[string]string{"t": "true", "f": "false", "n": "null", "nan": "-NaN"}},
	{"duplicate keys", `{a: 1, a: 2}`, map[string]string{}},
}

func TestParseTreeSpans(t *testing.T) {
	for _, tt := range treeTests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := ParseTree("t", []byte(tt.in))
			if err != nil {
				t.Fatalf("ParseTree(%q) = %v", tt.in, err)
			}
			for path, want := range tt.spans {
				n := root
				for _, k := range strings.Split(path, ".") {
					ms := n.Find(k)
					if len(ms) != 1 {
						t.Fatalf("%s: %d members named %q", path, len(ms), k)
					}
					n = ms[0].Value
				}
				if got := tt.in[n.Start:n.End]; got != want {
					t.Errorf("span of %s = %q, want %q", path, got, want)
				}
			}
			checkTree(t, []byte(tt.in))
		})
	}
}

func TestParseTreeCommas(t *testing.T) {
	in := `{a: 1, b: [2,3] /* c */ , c: 4}`
	root, err := ParseTree("t", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []int{strings.Index(in, ","), strings.Index(in, "*/ ,") + 3, -1}
	for i, m := range root.Members {
		if m.Comma != want[i] {
			t.Errorf("member %s: Comma = %d, want %d", m.Key, m.Comma, want[i])
		}
	}
	if got := len(root.Find("b")[0].Value.Elems); got != 2 {
		t.Errorf("b has %d elements, want 2", got)
	}
}

// ParseTree refuses what Parse refuses, with the same located error.
func TestParseTreeErrors(t *testing.T) {
	for _, tt := range json5InvalidTests {
		_, err := ParseTree("openclaw.json", []byte(tt.in))
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseTree(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

// Decode builds a new value on every call, so a caller that changes one
// cannot change what the tree says.
func TestDecodeIsFresh(t *testing.T) {
	root, err := ParseTree("t", []byte(`{a: {b: [1]}}`))
	if err != nil {
		t.Fatal(err)
	}
	v := root.Decode().(map[string]any)
	v["a"].(map[string]any)["b"].([]any)[0] = "changed"
	v["x"] = true
	again := root.Decode().(map[string]any)
	if len(again) != 1 || again["a"].(map[string]any)["b"].([]any)[0] != 1.0 {
		t.Errorf("Decode() after a change to an earlier result = %v", again)
	}
}

// checkTree asserts what ParseTree promises of data: it accepts exactly what
// Parse accepts, with the same error; its tree decodes to Parse's value; and
// every span is where it says, so that re-slicing the source at a value's
// span parses to that value again, a key's span to that key, and a comma's
// offset holds a comma.
func checkTree(t *testing.T, data []byte) {
	t.Helper()
	want, werr := Parse("t", data)
	root, err := ParseTree("t", data)
	if (werr == nil) != (err == nil) || (err != nil && err.Error() != werr.Error()) {
		t.Fatalf("ParseTree(%q) error = %v, Parse error = %v", data, err, werr)
	}
	if err != nil {
		return
	}
	if got := root.Decode(); !sameValue(got, want) {
		t.Fatalf("ParseTree(%q) decodes to %#v, Parse = %#v", data, got, want)
	}
	var walk func(n *Node, lo, hi int, depth int)
	walk = func(n *Node, lo, hi int, depth int) {
		if n == nil {
			t.Fatalf("%q: nil node", data)
		}
		if n.Start < lo || n.End > hi || n.Start >= n.End {
			t.Fatalf("%q: span [%d,%d) outside its parent's [%d,%d)", data, n.Start, n.End, lo, hi)
		}
		text := data[n.Start:n.End]
		if depth < 16 || n.Kind == Scalar {
			// Deeper containers are checked through their scalars and the
			// shallower containers that hold them; re-parsing each one
			// would be quadratic in the nesting.
			v, err := Parse("t", text)
			if err != nil || !sameValue(v, n.Decode()) {
				t.Fatalf("%q: the text at [%d,%d) %q parses to %#v (%v), the tree says %#v", data, n.Start, n.End, text, v, err, n.Decode())
			}
		}
		switch n.Kind {
		case Object:
			if text[0] != '{' || text[len(text)-1] != '}' {
				t.Fatalf("%q: object span %q is not braced", data, text)
			}
			at := n.Start + 1
			for _, m := range n.Members {
				if m.KeyStart < at || m.KeyEnd <= m.KeyStart || m.Value == nil || m.Value.Start < m.KeyEnd {
					t.Fatalf("%q: member %q spans out of order", data, m.Key)
				}
				if got, ok := keyAt(data[m.KeyStart:m.KeyEnd]); !ok || got != m.Key {
					t.Fatalf("%q: the key text %q reads as %q (%v), the tree says %q", data, data[m.KeyStart:m.KeyEnd], got, ok, m.Key)
				}
				walk(m.Value, m.KeyEnd, n.End-1, depth+1)
				at = m.Value.End
				if m.Comma >= 0 {
					if m.Comma < m.Value.End || m.Comma >= n.End-1 || data[m.Comma] != ',' {
						t.Fatalf("%q: member %q's comma at %d is not a comma after it", data, m.Key, m.Comma)
					}
					at = m.Comma + 1
				}
			}
		case Array:
			if text[0] != '[' || text[len(text)-1] != ']' {
				t.Fatalf("%q: array span %q is not bracketed", data, text)
			}
			at := n.Start + 1
			for _, e := range n.Elems {
				walk(e, at, n.End-1, depth+1)
				at = e.End
			}
		}
	}
	walk(root, 0, len(data), 0)
}

// keyAt reads a key's text the way a member name is read: quoted, as a
// string value; bare, as the one key of an object around it.
func keyAt(raw []byte) (string, bool) {
	if raw[0] == '"' || raw[0] == '\'' {
		v, err := Parse("key", raw)
		s, ok := v.(string)
		return s, err == nil && ok
	}
	v, err := Parse("key", append(append([]byte("{"), raw...), ":0}"...))
	m, ok := v.(map[string]any)
	if err != nil || !ok || len(m) != 1 {
		return "", false
	}
	for k := range m {
		return k, true
	}
	return "", false
}

// sameValue is reflect.DeepEqual for parsed values, except that NaN equals
// NaN.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			w, ok := b[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case float64:
		b, ok := b.(float64)
		return ok && (a == b && math.Signbit(a) == math.Signbit(b) || math.IsNaN(a) && math.IsNaN(b))
	}
	return a == b
}

func FuzzParseTree(f *testing.F) {
	for _, tt := range treeTests {
		f.Add([]byte(tt.in))
	}
	for _, tt := range json5ValidTests {
		f.Add([]byte(tt.in))
	}
	// The configs setup edits and the audit reads.
	for _, pattern := range []string{"../setup/testdata/*.json*", "../setup/testdata/*/*.json5", "../audit/testdata/corpus/*/openclaw.json"} {
		files, _ := filepath.Glob(pattern)
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		checkTree(t, data)
	})
}
