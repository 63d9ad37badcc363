package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of golden adapt tests")

// TestAdaptGolden adapts every testdata/*.caddyfiletest (a Caddyfile, a line of
// dashes, the expected JSON) and compares the JSON with what is recorded.
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files found")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := splitGolden(string(data))
			if !ok {
				t.Fatalf("%s: no line of dashes between the Caddyfile and the JSON", file)
			}
			got := adaptJSON(t, input)
			if *update {
				if err := os.WriteFile(file, []byte(input+"----------\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(want) {
				t.Errorf("%s: adapted JSON differs\n--- got\n%s\n--- want\n%s", file, got, want)
			}
		})
	}
}

func splitGolden(s string) (input, want string, ok bool) {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" && strings.Trim(strings.TrimSpace(l), "-") == "" {
			return strings.Join(lines[:i], ""), strings.Join(lines[i+1:], ""), true
		}
	}
	return "", "", false
}

func adaptJSON(t testing.TB, caddyfile string) string {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w.String())
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\n"
}

// TestAdaptExamples adapts each runnable examples/*.caddyfile and compares the
// JSON with testdata/examples/<name>.json.
func TestAdaptExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d examples, want at least 5", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := adaptJSON(t, string(data))
			golden := filepath.Join("testdata", "examples", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden JSON for %s (run with -update): %v", file, err)
			}
			if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
				t.Errorf("%s: adapted JSON differs from %s\n--- got\n%s", file, golden, got)
			}
		})
	}
}

// TestAdaptCaddyfileExample keeps the recommended Caddyfile adaptable.
func TestAdaptCaddyfileExample(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	adaptJSON(t, string(data))
}

// TestCaddyfileExampleAdminSocket pins where Caddyfile.example's admin
// socket lands: in the user's runtime directory, and without one (root, su,
// sudo) in /run/clawgate, never at the file system's root.
func TestCaddyfileExampleAdminSocket(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	listen := func() string {
		var cfg struct {
			Admin struct {
				Listen string `json:"listen"`
			} `json:"admin"`
		}
		if err := json.Unmarshal([]byte(adaptJSON(t, string(data))), &cfg); err != nil {
			t.Fatal(err)
		}
		return cfg.Admin.Listen
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	if got, want := listen(), "unix//run/user/1000/clawgate-admin.sock|0600"; got != want {
		t.Errorf("with XDG_RUNTIME_DIR: admin listen = %q, want %q", got, want)
	}
	os.Unsetenv("XDG_RUNTIME_DIR") // t.Setenv restores it
	if got, want := listen(), "unix//run/clawgate/clawgate-admin.sock|0600"; got != want {
		t.Errorf("without XDG_RUNTIME_DIR: admin listen = %q, want %q", got, want)
	}
}
