package audit

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// writeTree writes files (relative path → content) under dir with 0600.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func loadDir(t *testing.T, dir string, env map[string]string) (*Config, error) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	return Load(LoadOptions{ConfigPath: filepath.Join(dir, "openclaw.json"), StateDir: dir, Env: EnvMap(env), Home: filepath.Join(dir, "home")})
}

func TestLoadIncludes(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		want     map[string]any
		includes []string
	}{
		{
			name: "single include with sibling override",
			files: map[string]string{
				"openclaw.json": `{gateway: {$include: './gw.json5', bind: 'loopback'}}`,
				"gw.json5":      `{bind: 'lan', port: 1, auth: {mode: 'token'}}`,
			},
			want:     map[string]any{"gateway": map[string]any{"bind": "loopback", "port": 1.0, "auth": map[string]any{"mode": "token"}}},
			includes: []string{"gw.json5"},
		},
		{
			name: "array include merges in order, arrays concatenate",
			files: map[string]string{
				"openclaw.json": `{tools: {$include: ['a.json', 'b.json']}}`,
				"a.json":        `{"deny": ["x"], "exec": {"mode": "full", "host": "gateway"}}`,
				"b.json":        `{"deny": ["y"], "exec": {"mode": "ask"}}`,
			},
			want:     map[string]any{"tools": map[string]any{"deny": []any{"x", "y"}, "exec": map[string]any{"mode": "ask", "host": "gateway"}}},
			includes: []string{"a.json", "b.json"},
		},
		{
			name: "nested include resolves relative to the including file",
			files: map[string]string{
				"openclaw.json":  `{$include: 'conf/base.json'}`,
				"conf/base.json": `{"gateway": {"$include": "gw.json"}}`,
				"conf/gw.json":   `{"mode": "local"}`,
			},
			want:     map[string]any{"gateway": map[string]any{"mode": "local"}},
			includes: []string{"conf/base.json", "conf/gw.json"},
		},
		{
			name: "include inside an array element",
			files: map[string]string{
				"openclaw.json": `{hooks: {mappings: [{$include: 'm.json'}]}}`,
				"m.json":        `{"path": "/x"}`,
			},
			want:     map[string]any{"hooks": map[string]any{"mappings": []any{map[string]any{"path": "/x"}}}},
			includes: []string{"m.json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			cfg, err := loadDir(t, dir, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(cfg.Tree, tt.want) {
				t.Errorf("Tree = %#v, want %#v", cfg.Tree, tt.want)
			}
			var want []string
			for _, inc := range tt.includes {
				want = append(want, filepath.Join(dir, inc))
			}
			if !reflect.DeepEqual(cfg.Includes, want) {
				t.Errorf("Includes = %v, want %v", cfg.Includes, want)
			}
		})
	}
}

func TestLoadIncludeErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		setup func(t *testing.T, dir string)
		env   map[string]string
		want  string
	}{
		{name: "cycle", files: map[string]string{"openclaw.json": `{$include: 'a.json'}`, "a.json": `{"$include": "b.json"}`, "b.json": `{"$include": "a.json"}`}, want: "circular include"},
		{name: "self include", files: map[string]string{"openclaw.json": `{$include: 'openclaw.json'}`}, want: "circular include"},
		{name: "escapes config dir", files: map[string]string{"openclaw.json": `{$include: '../outside.json'}`}, want: "escapes config directory"},
		{name: "absolute outside", files: map[string]string{"openclaw.json": `{$include: '/etc/hostname'}`}, want: "escapes config directory"},
		{name: "missing file", files: map[string]string{"openclaw.json": `{$include: 'nope.json'}`}, want: "reading include file nope.json"},
		{name: "bad value type", files: map[string]string{"openclaw.json": `{$include: 3}`}, want: "expected string or array of strings"},
		{name: "bad array item", files: map[string]string{"openclaw.json": `{$include: ['a.json', 1]}`, "a.json": `{}`}, want: "invalid $include array item"},
		{name: "siblings need an object", files: map[string]string{"openclaw.json": `{x: {$include: 'a.json', y: 1}}`, "a.json": `[1]`}, want: "require the included content to be an object"},
		{name: "parse error is located", files: map[string]string{"openclaw.json": `{$include: 'a.json'}`, "a.json": "{\n  a: 1,,\n}"}, want: "a.json:2:8: unexpected character ','"},
		{name: "depth limit", files: func() map[string]string {
			m := map[string]string{"openclaw.json": `{$include: 'i0.json'}`}
			for i := 0; i < 11; i++ {
				m["i"+strconv.Itoa(i)+".json"] = `{"$include": "i` + strconv.Itoa(i+1) + `.json"}`
			}
			m["i11.json"] = `{}`
			return m
		}(), want: "maximum include depth (10)"},
		{name: "symlink out of the root", files: map[string]string{"openclaw.json": `{$include: 'link.json'}`}, setup: func(t *testing.T, dir string) {
			outside := filepath.Join(t.TempDir(), "secret.json")
			writeTree(t, filepath.Dir(outside), map[string]string{"secret.json": `{}`})
			if err := os.Symlink(outside, filepath.Join(dir, "link.json")); err != nil {
				t.Fatal(err)
			}
		}, want: "resolves outside config directory (symlink)"},
		{name: "hard link refused", files: map[string]string{"openclaw.json": `{$include: 'a.json'}`, "a.json": `{}`}, setup: func(t *testing.T, dir string) {
			if err := os.Link(filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")); err != nil {
				t.Fatal(err)
			}
		}, want: "more than one hard link"},
		{name: "too large", files: map[string]string{"openclaw.json": `{$include: 'big.json'}`, "big.json": `{"a": "` + strings.Repeat("x", maxIncludeFileBytes) + `"}`}, want: "larger than"},
		{name: "top level must be an object", files: map[string]string{"openclaw.json": `[1, 2]`}, want: "top level must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			_, err := loadDir(t, dir, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadIncludeRoots(t *testing.T) {
	dir := t.TempDir()
	shared := t.TempDir()
	writeTree(t, shared, map[string]string{"common.json": `{"mode": "local"}`})
	writeTree(t, dir, map[string]string{"openclaw.json": `{gateway: {$include: '` + filepath.Join(shared, "common.json") + `'}}`})
	if _, err := loadDir(t, dir, nil); err == nil {
		t.Fatal("Load without OPENCLAW_INCLUDE_ROOTS accepted an include outside the config dir")
	}
	cfg, err := loadDir(t, dir, map[string]string{"OPENCLAW_INCLUDE_ROOTS": "/nonexistent:" + shared})
	if err != nil {
		t.Fatalf("Load with OPENCLAW_INCLUDE_ROOTS: %v", err)
	}
	if got := get(cfg.Tree, "gateway", "mode"); got != "local" {
		t.Errorf("gateway.mode = %v, want local", got)
	}
}

func TestLoadEnvSubstitution(t *testing.T) {
	tests := []struct {
		name       string
		config     string
		env        map[string]string
		path       []string
		want       string
		unresolved string
	}{
		{name: "whole value", config: `{a: '${TOKEN}'}`, env: map[string]string{"TOKEN": "s3cret"}, path: []string{"a"}, want: "s3cret"},
		{name: "embedded", config: `{a: 'https://${HOST}:${PORT}/x'}`, env: map[string]string{"HOST": "h", "PORT": "1"}, path: []string{"a"}, want: "https://h:1/x"},
		{name: "escaped", config: `{a: '$${TOKEN}'}`, env: map[string]string{"TOKEN": "s3cret"}, path: []string{"a"}, want: "${TOKEN}"},
		{name: "missing stays", config: `{a: {b: '${NOPE}'}}`, path: []string{"a", "b"}, want: "${NOPE}", unresolved: "a.b"},
		{name: "empty counts as missing", config: `{a: '${EMPTY}'}`, env: map[string]string{"EMPTY": ""}, path: []string{"a"}, want: "${EMPTY}", unresolved: "a"},
		{name: "lowercase is not a reference", config: `{a: '${lower}'}`, env: map[string]string{"lower": "x"}, path: []string{"a"}, want: "${lower}"},
		{name: "array index path", config: `{a: ['x', '${NOPE}']}`, path: []string{"a"}, want: "", unresolved: "a[1]"},
		{name: "env.vars fills gaps", config: `{env: {vars: {FROM_CFG: 'v1'}}, a: '${FROM_CFG}'}`, path: []string{"a"}, want: "v1"},
		{name: "real env wins over env.vars", config: `{env: {vars: {X: 'cfg'}}, a: '${X}'}`, env: map[string]string{"X": "real"}, path: []string{"a"}, want: "real"},
		{name: "keys are not substituted", config: `{'${K}': 1}`, env: map[string]string{"K": "k"}, path: []string{"${K}"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{"openclaw.json": tt.config})
			cfg, err := loadDir(t, dir, tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			v := get(cfg.Tree, tt.path...)
			if s, ok := v.(string); ok || tt.want != "" {
				if s != tt.want {
					t.Errorf("%v = %q, want %q", tt.path, s, tt.want)
				}
			} else if v == nil {
				t.Errorf("%v missing", tt.path)
			}
			if tt.unresolved != "" {
				if !cfg.Unresolved[tt.unresolved] {
					t.Errorf("Unresolved = %v, want %q in it", cfg.Unresolved, tt.unresolved)
				}
				if len(cfg.Warnings) == 0 {
					t.Error("no warning for a missing variable")
				}
			} else if len(cfg.Unresolved) != 0 {
				t.Errorf("Unresolved = %v, want none", cfg.Unresolved)
			}
		})
	}
}

func TestLoadPathResolution(t *testing.T) {
	home := t.TempDir()
	writeTree(t, filepath.Join(home, ".openclaw"), map[string]string{"openclaw.json": `{x: 'default'}`})
	alt := t.TempDir()
	writeTree(t, alt, map[string]string{"openclaw.json": `{x: 'state'}`, "custom.json5": `{x: 'custom'}`})
	tests := []struct {
		name      string
		opts      LoadOptions
		wantX     string
		wantState string
	}{
		{name: "defaults under home", opts: LoadOptions{Home: home}, wantX: "default", wantState: filepath.Join(home, ".openclaw")},
		{name: "OPENCLAW_HOME wins over HOME", opts: LoadOptions{Env: EnvMap(map[string]string{"OPENCLAW_HOME": home, "HOME": "/nonexistent"})}, wantX: "default", wantState: filepath.Join(home, ".openclaw")},
		{name: "state dir from env", opts: LoadOptions{Home: home, Env: EnvMap(map[string]string{"OPENCLAW_STATE_DIR": alt})}, wantX: "state", wantState: alt},
		{name: "config path from env", opts: LoadOptions{Home: home, Env: EnvMap(map[string]string{"OPENCLAW_CONFIG_PATH": filepath.Join(alt, "custom.json5")})}, wantX: "custom", wantState: filepath.Join(home, ".openclaw")},
		{name: "tilde in env", opts: LoadOptions{Home: home, Env: EnvMap(map[string]string{"OPENCLAW_STATE_DIR": "~/.openclaw"})}, wantX: "default", wantState: filepath.Join(home, ".openclaw")},
		{name: "explicit options win", opts: LoadOptions{Home: home, StateDir: alt, ConfigPath: filepath.Join(alt, "custom.json5"), Env: EnvMap(map[string]string{"OPENCLAW_STATE_DIR": "/nonexistent"})}, wantX: "custom", wantState: alt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Env == nil {
				tt.opts.Env = EnvMap(nil)
			}
			cfg, err := Load(tt.opts)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := cfg.Tree["x"]; got != tt.wantX {
				t.Errorf("x = %v, want %q", got, tt.wantX)
			}
			if cfg.StateDir != tt.wantState {
				t.Errorf("StateDir = %q, want %q", cfg.StateDir, tt.wantState)
			}
		})
	}
}

func TestLoadErrorsNameTheStep(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadDir(t, dir, nil); err == nil || !strings.HasPrefix(err.Error(), "reading config: ") {
		t.Errorf("missing config: error = %v, want a \"reading config: \" error", err)
	}
	writeTree(t, dir, map[string]string{"openclaw.json": "{\n gateway: {\n  bind: 'lan' 'x'\n }\n}"})
	_, err := loadDir(t, dir, nil)
	if err == nil || err.Error() != "parsing config: openclaw.json:3:15: unexpected character \"'\"" {
		t.Errorf("bad JSON5: error = %v", err)
	}
}
