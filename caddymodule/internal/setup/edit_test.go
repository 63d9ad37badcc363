package setup

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/json5"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// memEditor is an editor over one in-memory file.
func memEditor(t testing.TB, name, text string) (*editor, error) {
	d, err := parseDoc(name, []byte(text))
	if err != nil {
		return nil, err
	}
	f := &file{path: filepath.Join("/cfg", name), data: []byte(text), text: []byte(text), doc: d}
	f.style = detectStyle(f.path, d)
	return &editor{main: f, files: map[string]*file{f.path: f}}, nil
}

func TestEditLayout(t *testing.T) {
	set := func(v any, path ...string) op { return op{kind: opSet, path: path, value: v} }
	del := func(path ...string) op { return op{kind: opDelete, path: path} }
	move := func(to string, path ...string) op { return op{kind: opMove, path: path, newKey: to} }
	tests := []struct {
		name string
		file string
		in   string
		op   op
		want string
	}{
		{"replace scalar keeps comment", "c.json5",
			"{\n  bind: \"lan\", // why\n}\n", set("loopback", "bind"),
			"{\n  bind: \"loopback\", // why\n}\n"},
		{"insert after a commented last member", "c.json5",
			"{\n  a: 1 // one\n}\n", set(true, "b"),
			"{\n  a: 1, // one\n  b: true\n}\n"},
		{"insert keeps trailing comma style", "c.json5",
			"{\n  a: 1,\n}\n", set("x", "b"),
			"{\n  a: 1,\n  b: \"x\",\n}\n"},
		{"insert nested object, tabs", "c.json5",
			"{\n\tgateway: {\n\t\tmode: 'local',\n\t},\n}\n", set([]string{"a"}, "gateway", "auth", "trustedProxy", "allowUsers"),
			"{\n\tgateway: {\n\t\tmode: 'local',\n\t\tauth: {\n\t\t\ttrustedProxy: {\n\t\t\t\tallowUsers: ['a'],\n\t\t\t},\n\t\t},\n\t},\n}\n"},
		{"insert into empty object", "c.json",
			"{\n  \"gateway\": {}\n}\n", set("loopback", "gateway", "bind"),
			"{\n  \"gateway\": {\n    \"bind\": \"loopback\"\n  }\n}\n"},
		{"insert into empty file object", "c.json",
			"{}", set("loopback", "gateway", "bind"),
			"{\n  \"gateway\": {\n    \"bind\": \"loopback\"\n  }\n}"},
		{"insert into object holding only a comment", "c.json5",
			"{\n  gateway: { /* later */ }\n}\n", set("loopback", "gateway", "bind"),
			"{\n  gateway: {\n    bind: \"loopback\", /* later */ }\n}\n"},
		{"insert into one-line object on a one-line file", "c.json5",
			`{ gateway: { mode: "local" } }`, set("loopback", "gateway", "bind"),
			`{ gateway: { mode: "local", bind: "loopback" } }`},
		{"insert into one-line object with trailing comma", "c.json5",
			`{ gateway: { mode: "local", } }`, set("loopback", "gateway", "bind"),
			`{ gateway: { mode: "local", bind: "loopback", } }`},
		{"object into one-line object spreads it", "c.json5",
			"{\n  gateway: { mode: \"local\", port: 1 },\n}\n", set(true, "gateway", "auth", "x"),
			"{\n  gateway: {\n    mode: \"local\",\n    port: 1,\n    auth: {\n      x: true,\n    },\n  },\n}\n"},
		{"one-line object with a comment is not spread", "c.json5",
			"{\n  gateway: { mode: \"local\" /* hi */ },\n}\n", set(true, "gateway", "auth", "x"),
			"{\n  gateway: { mode: \"local\", auth: { x: true } /* hi */ },\n}\n"},
		{"key that is not an identifier is quoted", "c.json5",
			"{\n  ids: {\n    a: [],\n  },\n}\n", set([]string{"operator.read"}, "ids", "bob@example.com"),
			"{\n  ids: {\n    a: [],\n    \"bob@example.com\": [\"operator.read\"],\n  },\n}\n"},
		{"single quotes stay single", "c.json5",
			"{ 'a': 'x' }", set("it's", "b"),
			`{ 'a': 'x', 'b': 'it\'s' }`},
		{"delete a whole line with its comment", "c.json5",
			"{\n  a: 1,\n  b: 2, // gone\n  c: 3,\n}\n", del("b"),
			"{\n  a: 1,\n  c: 3,\n}\n"},
		{"delete the last member drops the comma before it", "c.json",
			"{\n  \"a\": 1,\n  \"b\": 2\n}\n", del("b"),
			"{\n  \"a\": 1\n}\n"},
		{"delete inline", "c.json5",
			"{ a: 1, b: 2, c: 3 }", del("b"),
			"{ a: 1, c: 3 }"},
		{"delete absent is nothing", "c.json5",
			"{ a: 1 }", del("x", "y"),
			"{ a: 1 }"},
		{"move keeps the value text", "c.json5",
			"{\n  auth: {\n    token: \"${TOK}\", // secret\n  },\n}\n", move("password", "auth", "token"),
			"{\n  auth: {\n    password: \"${TOK}\", // secret\n  },\n}\n"},
		{"move a quoted key", "c.json",
			`{"auth": {"token": {"source": "env", "id": "T"}}}`, move("password", "auth", "token"),
			`{"auth": {"password": {"source": "env", "id": "T"}}}`},
		{"replace a non-object on the way", "c.json5",
			"{\n  auth: null,\n}\n", set("x", "auth", "mode"),
			"{\n  auth: {\n    mode: \"x\",\n  },\n}\n"},
		{"CRLF file", "c.json5",
			"{\r\n  a: 1,\r\n  b: 2,\r\n}\r\n", del("a"),
			"{\r\n  b: 2,\r\n}\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ed, err := memEditor(t, tt.file, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ed.apply(tt.op); err != nil {
				t.Fatalf("apply: %v", err)
			}
			if got := string(ed.main.text); got != tt.want {
				t.Errorf("edited text:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// FuzzEdit plans every change against an arbitrary config and applies it to
// the text: each edit either succeeds, with the parsed tree changed exactly
// as planned (commit checks that), or is refused as unsafe; never an internal
// error, and after all edits the tree is the planned one.
func FuzzEdit(f *testing.F) {
	for _, s := range []string{
		"{\n  // a\n  a: 'x', /* b */ b: +Infinity, // c\n  $c_d: null,\n}",
		`{"a\u0062": 0x1F, 'c\'d': "e\"f", \u0061b: .5, ключ: 1e3}`,
		"{ a: 'x\\\r\ny', b: 2, c: \"// not a comment\" }",
		`{a:1/*x*/,b:2//y` + "\n}", `{a: 1, a: 2}`,
		"{}", "{gateway: null}", `{"gateway": {"auth": []}}`,
		"{\n  gateway: { auth: { token: 'x' } },\n}",
		"{gateway:{bind:'lan',auth:{mode:'token',token:'t',trustedProxy:{allowUsers:['Z']}},controlUi:{allowedOrigins:['*']}}}",
		"{ gateway: { $include: './x.json5' } }",
		"{\n\tgateway: {\n\t\tauth: { identityScopes: { 'x@y': ['operator.admin'] }, }, // c\n\t}\n}",
	} {
		f.Add(s)
	}
	e := Edge{
		UserHeader: "x-forwarded-user", RequiredHeaders: edge.GatewayRequiredHeaders(), Users: []string{"a@b.c", "token:ci"},
		Scopes:  map[string][]string{"a@b.c": {"operator.read"}},
		Origins: []string{"https://gw.t.ts.net"}, Port: 18789, AutoApproveScopes: []string{"operator.read"}, EdgePairing: true,
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1<<14 {
			return
		}
		ed, err := memEditor(t, "c.json5", text)
		if err != nil {
			return
		}
		m, ok := ed.main.doc.root.Decode().(map[string]any)
		if !ok {
			return
		}
		want := json5.Clone(m, nil)
		for _, o := range planOps(m, e, Options{DeviceAutoApprove: true}, release.Newest()) {
			if _, err := ed.apply(o); err != nil {
				if errors.Is(err, errUnsafe) || strings.Contains(err.Error(), "not loaded") {
					return
				}
				t.Fatalf("apply %s on %q: %v", PathString(o.path), text, err)
			}
			want, err = localOp{kind: o.kind, path: o.path, value: o.value, newKey: o.newKey}.applyTo(want)
			if err != nil {
				t.Fatal(err)
			}
		}
		got := ed.main.doc.root.Decode()
		if !equalTree(got, want) {
			t.Fatalf("after all edits of %q:\n%s\ngot  %v\nwant %v", text, ed.main.text, got, want)
		}
	})
}

func TestRenderNumbers(t *testing.T) {
	st := style{strQuote: '"', unit: "  "}
	tests := []struct {
		in   float64
		want string
	}{{18789, "18789"}, {0, "0"}, {-3, "-3"}, {0.5, "0.5"}, {1e20, "1e+20"}}
	for _, tt := range tests {
		if got := st.render(tt.in, "", false); got != tt.want {
			t.Errorf("render(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
