package service

import (
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func goldenParams(user bool) Params {
	return Params{
		Binary: "/usr/local/bin/caddy", Config: "/Users/alice/clawgate/Caddyfile", User: user,
		Owner: "alice", Group: "staff", UID: "501", Home: "/Users/alice",
		Env:        []string{"XDG_DATA_HOME=/Users/alice/.local/share", "XDG_CONFIG_HOME=/Users/alice/.config", "XDG_RUNTIME_DIR=/Users/alice/Library/Caches/clawgate"},
		WritePaths: []string{"/Users/alice/.local/share/caddy", "/Users/alice/.config/caddy", "/Users/alice/Library/Caches/clawgate"},
	}
}

// TestGolden compares the rendered files with golden files: a launchd
// property list cannot be loaded here, so its golden file is what is checked.
func TestGolden(t *testing.T) {
	tests := []struct {
		file   string
		render func(Params) (string, error)
		user   bool
	}{
		{"launchd-agent.plist", LaunchdPlist, true},
		{"launchd-daemon.plist", LaunchdPlist, false},
		{"systemd-user.service", SystemdUnit, true},
		{"systemd-system.service", SystemdUnit, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := tt.render(goldenParams(tt.user))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", tt.file, got)
			}
			if strings.HasSuffix(tt.file, ".plist") {
				// Well-formed XML, as launchd's parser needs.
				dec := xml.NewDecoder(strings.NewReader(got))
				for {
					if _, err := dec.Token(); err == io.EOF {
						break
					} else if err != nil {
						t.Fatalf("%s is not well-formed XML: %v", tt.file, err)
					}
				}
			}
			if !Intact([]byte(got)) {
				t.Errorf("%s: a freshly rendered file is not intact", tt.file)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Params)
		wantErr string
	}{
		{"relative binary", func(p *Params) { p.Binary = "caddy" }, `the binary must be an absolute path, not "caddy"`},
		{"relative config", func(p *Params) { p.Config = "Caddyfile" }, `the config must be an absolute path`},
		{"system without owner", func(p *Params) { p.User, p.Owner = false, "" }, "a system service needs the user it runs as"},
		{"relative write path", func(p *Params) { p.WritePaths = []string{"data"} }, `absolute, not "data"`},
		{"bad environment", func(p *Params) { p.Env = []string{"NOVALUE"} }, `"NOVALUE" is not NAME=value`},
		{"line break", func(p *Params) { p.Config = "/a\nExecStartPre=/bin/sh" }, "holds a line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := goldenParams(true)
			tt.edit(&p)
			for _, render := range []func(Params) (string, error){SystemdUnit, LaunchdPlist} {
				if _, err := render(p); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("render = %v, want %q", err, tt.wantErr)
				}
			}
		})
	}
}

func TestQuoteSystemd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/usr/bin/caddy", "/usr/bin/caddy"},
		{"/home/al ice/Caddyfile", `"/home/al ice/Caddyfile"`},
		{"/x/100%", "/x/100%%"},
		{`/x/$HOME`, `"/x/$$HOME"`},
		{`/x/"q"`, `"/x/\"q\""`},
		{"", `""`},
	}
	for _, tt := range tests {
		if got := quoteSystemd(tt.in); got != tt.want {
			t.Errorf("quoteSystemd(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestInstallUninstall(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "systemd", "user", "clawgate.service")
	unit, err := SystemdUnit(goldenParams(true))
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := Install(path, unit); err != nil || !wrote {
		t.Fatalf("first install: %v, %v", wrote, err)
	}
	if wrote, err := Install(path, unit); err != nil || wrote {
		t.Fatalf("installing the same file again: %v, %v; want nothing written", wrote, err)
	}
	// A file install wrote and nobody changed is replaced by a new render.
	p := goldenParams(true)
	p.Config = "/Users/alice/other/Caddyfile"
	unit2, err := SystemdUnit(p)
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := Install(path, unit2); err != nil || !wrote {
		t.Fatalf("replacing an intact file: %v, %v", wrote, err)
	}
	// A changed file is left alone, by install and uninstall.
	changed := strings.Replace(unit2, "RestartSec=5s", "RestartSec=1s", 1)
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(path, unit); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("install over a changed file: %v, want a refusal", err)
	}
	if _, err := Uninstall(path); err == nil || !strings.Contains(err.Error(), "not removing") {
		t.Errorf("uninstall of a changed file: %v, want a refusal", err)
	}
	if got, _ := os.ReadFile(path); string(got) != changed {
		t.Error("the changed file was modified")
	}
	// A file install did not write at all is left alone too.
	if err := os.WriteFile(path, []byte("[Service]\nExecStart=/usr/bin/caddy run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(path, unit); err == nil {
		t.Error("install over a file it did not write: no error")
	}
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := Uninstall(path); err != nil || !removed {
		t.Fatalf("uninstall: %v, %v", removed, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after uninstall: %v", err)
	}
	if removed, err := Uninstall(path); err != nil || removed {
		t.Errorf("uninstall again: %v, %v; want nothing to remove", removed, err)
	}
}

func TestIntact(t *testing.T) {
	unit, err := SystemdUnit(goldenParams(false))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"as rendered", unit, true},
		{"a setting changed", strings.Replace(unit, "User=alice", "User=root", 1), false},
		{"a line added", unit + "ExecStartPre=/bin/true\n", false},
		{"the hash changed", strings.Replace(unit, "clawgate-sha256: ", "clawgate-sha256: 0", 1)[:len(unit)], false},
		{"no stamp", "[Service]\n", false},
	}
	for _, tt := range tests {
		if got := Intact([]byte(tt.in)); got != tt.want {
			t.Errorf("Intact(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
