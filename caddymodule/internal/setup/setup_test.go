package setup

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
)

// testEdge is the edge most tests plan against: alice by login, a ci token,
// one tailnet origin, the default port.
func testEdge(t *testing.T) Edge {
	t.Helper()
	e, err := Derive(Input{
		Guards: []Guard{{
			Port: 18789,
			Rules: []string{
				"allow user:alice@example.com scopes operator.read,operator.write",
				"allow tag:ci token:ci scopes operator.read",
			},
			Tokens: []Token{{Name: "ci"}},
		}},
		Origins: []string{"https://gw.tail1234.ts.net"},
		Gated:   true,
	})
	if err != nil {
		t.Fatalf("Derive: %v", err)
	}
	return e
}

// copyCase copies testdata/<name> (a file, or a directory holding
// openclaw.json5) to a fresh directory with mode 0600 and returns the main
// config's path.
func copyCase(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("testdata", name)
	info, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsDir() {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, name)
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "openclaw.json5")
}

func loadOpts(t *testing.T, path string) audit.LoadOptions {
	return audit.LoadOptions{
		ConfigPath: path,
		StateDir:   filepath.Join(filepath.Dir(path), "state"),
		Env:        audit.EnvMap(map[string]string{}),
		Home:       filepath.Dir(path),
	}
}

func diffLines(p *Plan) []string {
	var out []string
	for _, c := range p.Changes {
		line := c.Op + " " + c.Path
		switch c.Op {
		case "set", "add":
			line += " = " + c.New
		case "move":
			line += " -> " + c.New
		}
		out = append(out, line)
	}
	return out
}

var (
	addProxies   = `add gateway.trustedProxies = ["127.0.0.1","::1"]`
	toTP         = `set gateway.auth.mode = "trusted-proxy"`
	addTP        = `add gateway.auth.mode = "trusted-proxy"`
	moveToken    = `move gateway.auth.token -> gateway.auth.password`
	addHeader    = `add gateway.auth.trustedProxy.userHeader = "x-forwarded-user"`
	addRequired  = `add gateway.auth.trustedProxy.requiredHeaders = ["x-forwarded-proto","x-forwarded-host"]`
	addLoopback  = `add gateway.auth.trustedProxy.allowLoopback = true`
	addUsers     = `add gateway.auth.trustedProxy.allowUsers = ["alice@example.com","token:ci"]`
	addAlice     = `add gateway.auth.identityScopes["alice@example.com"] = ["operator.read","operator.write"]`
	addCI        = `add gateway.auth.identityScopes["token:ci"] = ["operator.read"]`
	addOrigins   = `add gateway.controlUi.allowedOrigins = ["https://gw.tail1234.ts.net"]`
	setOrigins   = `set gateway.controlUi.allowedOrigins = ["https://gw.tail1234.ts.net"]`
	toLoopback   = `set gateway.bind = "loopback"`
	addLoopbackB = `add gateway.bind = "loopback"`
	trustedTail  = []string{addHeader, addRequired, addLoopback, addUsers, addAlice, addCI}
)

func cat(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch t := p.(type) {
		case string:
			out = append(out, t)
		case []string:
			out = append(out, t...)
		}
	}
	return out
}

// The starting states a gateway is typically found in, each planned against testEdge, written,
// audited again and planned again.
func TestPlanAndWrite(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		paired  bool // the gateway has `pairing required`
		want    []string
		secrets []string // text that must never appear in the plan
		inFile  map[string]int
	}{
		{
			name:    "token.json5",
			want:    cat(addProxies, toTP, moveToken, trustedTail, addOrigins),
			secrets: []string{"tok-0123456789abcdef0123456789abcdef"},
		},
		{
			name: "password.json",
			want: cat(addProxies, toTP, trustedTail, setOrigins),
		},
		{
			name: "lan.json5",
			want: cat(toLoopback, `set gateway.trustedProxies = ["127.0.0.1","::1"]`, `set gateway.allowRealIpFallback = false`,
				toTP, moveToken, trustedTail, setOrigins),
			secrets: []string{"tok-lan-0123456789abcdef012345"},
		},
		{
			name: "custom.json5",
			want: cat(toLoopback, "remove gateway.customBindHost", addProxies, toTP, trustedTail, addOrigins),
		},
		{
			name: "serve.json5",
			want: cat(addProxies, `set gateway.tailscale.mode = "off"`, addTP, trustedTail, addOrigins),
		},
		{
			name: "funnel.json5",
			want: cat(addLoopbackB, addProxies, `set gateway.tailscale.mode = "off"`, toTP, trustedTail, addOrigins),
		},
		{
			name: "half.json5",
			want: []string{
				`set gateway.port = 18789`,
				`set gateway.trustedProxies = ["127.0.0.1","::1"]`,
				`set gateway.auth.trustedProxy.userHeader = "x-forwarded-user"`,
				`set gateway.auth.trustedProxy.requiredHeaders = ["x-forwarded-proto","x-forwarded-host"]`,
				addLoopback,
				`set gateway.auth.trustedProxy.allowUsers = ["alice@example.com","token:ci"]`,
				`set gateway.auth.trustedProxy.deviceAutoApprove.enabled = false`,
				addCI,
				`remove gateway.auth.identityScopes["bob@example.com"]`,
				setOrigins,
			},
		},
		{
			name:   "half.json5 with pairing required",
			paired: true,
			want: []string{
				`set gateway.port = 18789`,
				`set gateway.trustedProxies = ["127.0.0.1","::1"]`,
				`set gateway.auth.trustedProxy.userHeader = "x-forwarded-user"`,
				`set gateway.auth.trustedProxy.requiredHeaders = ["x-forwarded-proto","x-forwarded-host"]`,
				addLoopback,
				`set gateway.auth.trustedProxy.allowUsers = ["alice@example.com","token:ci"]`,
				`set gateway.auth.trustedProxy.deviceAutoApprove.scopes = ["operator.read","operator.write"]`,
				addCI,
				`remove gateway.auth.identityScopes["bob@example.com"]`,
				setOrigins,
			},
		},
		{
			name:   "token.json5 with pairing required",
			paired: true,
			want: cat(addProxies, toTP, moveToken, addHeader, addRequired, addLoopback, addUsers,
				`add gateway.auth.trustedProxy.deviceAutoApprove.enabled = true`,
				`add gateway.auth.trustedProxy.deviceAutoApprove.scopes = ["operator.read","operator.write"]`,
				addAlice, addCI, addOrigins),
		},
		{
			name:    "token.json5 with --device-auto-approve but no pairing required",
			opts:    Options{DeviceAutoApprove: true},
			want:    cat(addProxies, toTP, moveToken, trustedTail, addOrigins),
			secrets: []string{"tok-0123456789abcdef0123456789abcdef"},
		},
		{
			name: "done.json",
			want: nil,
		},
		{
			name: "empty.json",
			want: cat(addLoopbackB, addProxies, addTP, trustedTail, addOrigins),
		},
		{
			name:    "oneline.json5",
			want:    cat(toLoopback, addProxies, toTP, moveToken, trustedTail, addOrigins),
			secrets: []string{"tok-oneline-0123456789abcdef"},
		},
		{
			name: "envtoken.json5",
			want: cat(addLoopbackB, addProxies, addTP, `move env.vars.OPENCLAW_GATEWAY_TOKEN -> env.vars.OPENCLAW_GATEWAY_PASSWORD`,
				trustedTail, addOrigins),
			secrets: []string{"tok-env-0123456789abcdef0123456"},
		},
		{
			name:    "include",
			want:    cat(toLoopback, addProxies, toTP, moveToken, trustedTail, addOrigins),
			secrets: []string{"tok-include-0123456789abcdef012"},
			inFile:  map[string]int{"gateway.json5": 1, "auth.json5": 8},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := copyCase(t, strings.Fields(tt.name)[0])
			lo := loadOpts(t, path)
			before, err := audit.Load(lo)
			if err != nil {
				t.Fatal(err)
			}
			originals := map[string][]byte{}
			for _, f := range append([]string{path}, before.Includes...) {
				originals[f], _ = os.ReadFile(f)
			}
			e := testEdge(t)
			e.EdgePairing = tt.paired
			p, err := Prepare(lo, e, tt.opts)
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if p.Unwritable != "" {
				t.Fatalf("Prepare: unwritable: %s", p.Unwritable)
			}
			if got := diffLines(p); !slices.Equal(got, tt.want) {
				t.Errorf("plan =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			for _, c := range p.Changes {
				if c.Reason == "" {
					t.Errorf("change %s has no reason", c.Path)
				}
			}
			js, _ := json.Marshal(p)
			for _, s := range tt.secrets {
				if strings.Contains(string(js), s) {
					t.Errorf("the plan shows a secret: %s", js)
				}
			}
			inFile := map[string]int{}
			for _, c := range p.Changes {
				if c.File != "" {
					inFile[filepath.Base(c.File)]++
				}
			}
			if len(tt.inFile) > 0 && !reflect.DeepEqual(inFile, tt.inFile) {
				t.Errorf("changes by include file = %v, want %v", inFile, tt.inFile)
			}

			res, err := p.Write(time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			if len(tt.want) == 0 {
				if len(res.Written) != 0 || len(res.Backups) != 0 {
					t.Errorf("nothing to change, but wrote %v and backed up %v", res.Written, res.Backups)
				}
			}
			if len(res.Consistency) != 0 {
				t.Errorf("after Write, clawgate findings remain: %+v", res.Consistency)
			}
			after, err := audit.Load(lo)
			if err != nil {
				t.Fatalf("loading the written config: %v", err)
			}
			for _, f := range audit.Consistency(after, e.Expect()) {
				t.Errorf("after Write: %s: %s", f.CheckID, f.Title)
			}

			// Every comment marked "keep:" survives, in every file.
			for f, orig := range originals {
				now, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(string(orig), "\n") {
					if i := strings.Index(line, "keep:"); i >= 0 {
						comment := line[strings.LastIndex(line[:i], "/"):]
						if !strings.Contains(string(now), comment) {
							t.Errorf("%s lost the comment %q:\n%s", filepath.Base(f), comment, now)
						}
					}
				}
				if info, err := os.Stat(f); err == nil && slices.Contains(res.Written, f) && info.Mode().Perm() != 0o600 {
					t.Errorf("%s written with mode %04o, want 0600", f, info.Mode().Perm())
				}
			}
			for i, b := range res.Backups {
				data, err := os.ReadFile(b)
				if err != nil {
					t.Fatal(err)
				}
				if w := res.Written[i]; string(data) != string(originals[w]) {
					t.Errorf("backup %s does not hold what %s held", b, w)
				}
				if info, _ := os.Stat(b); info.Mode().Perm() != 0o600 {
					t.Errorf("backup %s has mode %04o, want 0600", b, info.Mode().Perm())
				}
			}

			// Nothing but the planned paths changed.
			changed := map[string]bool{}
			for _, o := range p.ops {
				changed[PathString(o.path)] = true
				if o.kind == opMove {
					changed[PathString(append(slices.Clone(o.path[:len(o.path)-1]), o.newKey))] = true
				}
			}
			if got, want := prune(after.Tree, nil, changed), prune(before.Tree, nil, changed); !equalTree(got, want) {
				t.Errorf("paths outside the plan changed:\n got %v\nwant %v", got, want)
			}
			// Moved secrets keep their value.
			for _, o := range p.ops {
				if o.kind == opMove {
					to := append(slices.Clone(o.path[:len(o.path)-1]), o.newKey)
					if got, want := lookupAny(after.Tree, to), lookupAny(before.Tree, o.path); !equalTree(got, want) {
						t.Errorf("%s moved to %s lost its value", PathString(o.path), PathString(to))
					}
				}
			}

			again, err := Prepare(lo, e, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if again.Pending() {
				t.Errorf("planning again after Write still changes: %v", diffLines(again))
			}
		})
	}
}

// prune drops the given paths (and any subtree under them) from a tree.
func prune(v any, path []string, drop map[string]bool) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, e := range m {
		p := append(slices.Clone(path), k)
		if drop[PathString(p)] {
			continue
		}
		pruned := prune(e, p, drop)
		if sub, ok := pruned.(map[string]any); ok && len(sub) == 0 {
			if _, wasMap := e.(map[string]any); wasMap && len(e.(map[string]any)) > 0 {
				continue // emptied by pruning: created by the plan
			}
		}
		out[k] = pruned
	}
	return out
}

func TestUnsafeEditsAreRefused(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"ambiguous", "gateway.trustedProxies is written more than once"},
		{"includevalue", "is pulled in by $include"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := copyCase(t, tt.name)
			orig, _ := os.ReadFile(path)
			p, err := Prepare(loadOpts(t, path), testEdge(t), Options{})
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if !strings.Contains(p.Unwritable, tt.want) {
				t.Errorf("Unwritable = %q, want it to say %q", p.Unwritable, tt.want)
			}
			if !p.Pending() {
				t.Errorf("the plan is empty; it should still show the changes")
			}
			if _, err := p.Write(time.Now()); err == nil || !errors.Is(err, errUnsafe) {
				t.Errorf("Write = %v, want a refusal", err)
			}
			if now, _ := os.ReadFile(path); string(now) != string(orig) {
				t.Errorf("the file changed")
			}
			assertNoStrays(t, filepath.Dir(path))
		})
	}
}

// TestPrepareRefusesInvalidResult: setup never writes a config OpenClaw
// would refuse to load, and says which keys are wrong.
func TestPrepareRefusesInvalidResult(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openclaw.json5")
	orig := `{
  gateway: {
    mode: "local",
    bind: "loopback",
    auth: { mode: "token", token: "tok_3f9c2a7b8e1d4c6f9a0b5e2d7c8f1a3b" },
    controlUi: { allowInsecureAuth: true },
  },
  tools: { exec: { security: "yolo" } },
}
`
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(loadOpts(t, path), testEdge(t), Options{})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if !p.Pending() {
		t.Fatalf("the plan is empty; it should still show the changes")
	}
	for _, want := range []string{"OpenClaw would refuse", `gateway.controlUi: Unrecognized key: "allowInsecureAuth"`, "tools.exec.security"} {
		if !strings.Contains(p.Unwritable, want) {
			t.Errorf("Unwritable = %q, want it to say %q", p.Unwritable, want)
		}
	}
	if _, err := p.Write(time.Now()); err == nil {
		t.Errorf("Write succeeded on a plan whose result does not validate")
	}
	if now, _ := os.ReadFile(path); string(now) != orig {
		t.Errorf("the file changed")
	}
	assertNoStrays(t, dir)

	// The same config without the bad keys is written.
	fixed := strings.Replace(strings.Replace(orig, "    controlUi: { allowInsecureAuth: true },\n", "", 1), `"yolo"`, `"allowlist"`, 1)
	if err := os.WriteFile(path, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = Prepare(loadOpts(t, path), testEdge(t), Options{})
	if err != nil || p.Unwritable != "" {
		t.Fatalf("Prepare(fixed) = %v, Unwritable %q", err, p.Unwritable)
	}
	if _, err := p.Write(time.Now()); err != nil {
		t.Errorf("Write(fixed): %v", err)
	}
}

// assertNoStrays fails if a temporary or backup file was left in dir.
func assertNoStrays(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".clawgate-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) string // returns the path to plan on
		between func(t *testing.T, path string)        // after Prepare, before Write
		hook    func(path string) func()               // right before the rename
		want    string
		edited  string // what the test itself appended to the file
	}{
		{
			name: "concurrent edit before Write",
			between: func(t *testing.T, path string) {
				appendTo(t, path, "\n// edited by someone else\n")
			},
			want: "changed since setup read it",
		},
		{
			name: "concurrent edit right before the rename",
			hook: func(path string) func() {
				return func() {
					f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
					f.WriteString("\n// edited by someone else\n")
					f.Close()
				}
			},
			want:   "changed since setup read it",
			edited: "\n// edited by someone else\n",
		},
		{
			name: "same bytes, touched",
			between: func(t *testing.T, path string) {
				future := time.Now().Add(time.Hour)
				if err := os.Chtimes(path, future, future); err != nil {
					t.Fatal(err)
				}
			},
			want: "changed since setup read it",
		},
		{
			name: "read-only file",
			prepare: func(t *testing.T, path string) string {
				if err := os.Chmod(path, 0o400); err != nil {
					t.Fatal(err)
				}
				return path
			},
			want: "is read-only",
		},
		{
			name: "symlinked config",
			prepare: func(t *testing.T, path string) string {
				link := filepath.Join(filepath.Dir(path), "link.json5")
				if err := os.Symlink(path, link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			want: "is a symlink",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			real := copyCase(t, "token.json5")
			path := real
			if tt.prepare != nil {
				path = tt.prepare(t, real)
			}
			p, err := Prepare(loadOpts(t, path), testEdge(t), Options{})
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if tt.prepare != nil && !strings.Contains(p.Unwritable, tt.want) {
				t.Errorf("the plan's Unwritable = %q, want it to say %q before --write", p.Unwritable, tt.want)
			}
			if tt.between != nil {
				tt.between(t, real)
			}
			if tt.hook != nil {
				p.before = tt.hook(real)
			}
			orig, _ := os.ReadFile(real)
			origInfo, _ := os.Lstat(path)
			_, err = p.Write(time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write = %v, want an error saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "tok-0123456789abcdef") {
				t.Errorf("the error shows the token: %v", err)
			}
			if now, _ := os.ReadFile(real); string(now) != string(orig)+tt.edited {
				t.Errorf("the file was modified:\n%s", now)
			}
			if info, _ := os.Lstat(path); info.Mode() != origInfo.Mode() {
				t.Errorf("mode changed from %v to %v", origInfo.Mode(), info.Mode())
			}
			assertNoStrays(t, filepath.Dir(real))
		})
	}
}

func TestPrepareRefusesUnparsable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "openclaw.json")
	orig := "{ gateway: { bind: \"lan\", } oops }\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Prepare(loadOpts(t, path), testEdge(t), Options{})
	if err == nil || !strings.Contains(err.Error(), "openclaw.json:1:29") {
		t.Fatalf("Prepare = %v, want a parse error with line and column", err)
	}
	if now, _ := os.ReadFile(path); string(now) != orig {
		t.Errorf("the file changed")
	}
	assertNoStrays(t, dir)

	_, err = Prepare(loadOpts(t, filepath.Join(dir, "missing.json")), testEdge(t), Options{})
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Prepare(missing) = %v, want not-exist", err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestMovedTokenNote(t *testing.T) {
	tests := []struct {
		name, token string
		wantNote    bool
	}{
		{"literal", `"tok-literal-0123456789abcdef0123"`, true},
		{"env reference", `"${GW_TOKEN}"`, false},
		{"SecretRef", `{ source: "env", provider: "default", id: "GW_TOKEN" }`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "openclaw.json5")
			cfg := "{ gateway: { auth: { mode: \"token\", token: " + tt.token + " } } }"
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			lo := loadOpts(t, path)
			lo.Env = audit.EnvMap(map[string]string{"GW_TOKEN": "tok-from-env-0123456789abcdef01"})
			p, err := Prepare(lo, testEdge(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := slices.ContainsFunc(p.Notes, func(n string) bool { return strings.Contains(n, "plain text") })
			if got != tt.wantNote {
				t.Errorf("plain-text note = %v, want %v (notes %q)", got, tt.wantNote, p.Notes)
			}
			if js, _ := json.Marshal(p); strings.Contains(string(js), "tok-") {
				t.Errorf("the plan shows the token: %s", js)
			}
		})
	}
}
