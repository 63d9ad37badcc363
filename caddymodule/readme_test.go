package caddymodule

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeSection is the text of the README's section with this heading, up
// to the next heading of the same level.
func readmeSection(t *testing.T, readme, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	return section
}

// TestReadmeFirstCommands: the README's second command is the one .ci/run
// runs, and its first names the demo's main package.
func TestReadmeFirstCommands(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := readmeSection(t, string(readme), "The first two commands")
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the section has no sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		c, _, _ := strings.Cut(l, "#")
		cmds = append(cmds, strings.TrimSpace(c))
	}
	if len(cmds) != 2 {
		t.Fatalf("the first block holds %d commands, want 2: %q", len(cmds), cmds)
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^exec (.+)$`).FindStringSubmatch(string(ci))
	if m == nil || strings.TrimSpace(m[1]) != cmds[1] {
		t.Errorf(".ci/run runs %q, the README's second command is %q", m, cmds[1])
	}
	pkg, ok := strings.CutPrefix(cmds[0], "go run ./")
	if !ok {
		t.Fatalf("the first command %q is not a go run of a package in this repository", cmds[0])
	}
	main, err := os.ReadFile(filepath.Join("..", pkg, "main.go"))
	if err != nil || !bytes.Contains(main, []byte("package main\n")) {
		t.Errorf("the first command runs %s, which has no main package: %v", pkg, err)
	}
}

// TestReadmeRealUseSetup runs the `caddy clawgate setup` command the README's
// real-use paragraph gives, word for word, from the repository's root in a
// HOME holding OpenClaw's config as onboarding writes it.
func TestReadmeRealUseSetup(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := readmeSection(t, string(readme), "The first two commands")
	_, realUse, ok := strings.Cut(section, "For real use")
	if !ok {
		t.Fatal("the section has no real-use paragraph")
	}
	var run, setupCmd string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(realUse, -1) {
		switch c := strings.TrimPrefix(m[1], "go run ./cmd/"); {
		case strings.HasPrefix(c, "caddy run "):
			run = c
		case strings.HasPrefix(c, "caddy clawgate setup"):
			setupCmd = c
		}
	}
	if run == "" || setupCmd == "" {
		t.Fatalf("the real-use paragraph lacks `caddy run ...` or `caddy clawgate setup ...`:\n%s", realUse)
	}
	_, ocConfig := writeOnboardedHome(t)
	t.Chdir("..")
	// setup must read the file `caddy run` was given, as `caddy run` reads it.
	runArgs := strings.Fields(run)
	for i, a := range runArgs {
		if a == "--config" && i+1 < len(runArgs) && !strings.Contains(setupCmd, "--config "+runArgs[i+1]) {
			if _, err := os.Stat("Caddyfile"); err != nil {
				t.Errorf("`%s` runs %s, but `%s` reads ./Caddyfile, which does not exist", run, runArgs[i+1], setupCmd)
			}
		}
	}
	cmd := newSetupCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(strings.Fields(setupCmd)[3:])
	err = cmd.Execute()
	if err != nil {
		t.Fatalf("`%s`: %v\n%s", setupCmd, err, out.String())
	}
	if !strings.Contains(out.String(), "wrote "+ocConfig) {
		t.Errorf("`%s` did not write %s:\n%s", setupCmd, ocConfig, out.String())
	}
}
