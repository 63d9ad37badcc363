package skilltree

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReadFollowsTheLoadersRule(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"a", ".hidden", "node_modules"} {
		must(os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(dir, FileName), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "README.md"), nil, 0o644))
	must(os.WriteFile(filepath.Join(other, "target.md"), nil, 0o644))
	must(os.Symlink(other, filepath.Join(dir, "linked")))
	must(os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling")))
	must(os.Symlink(filepath.Join(other, "target.md"), filepath.Join(dir, "sub-"+FileName)))

	dirs, skills := Read(dir)
	wantDirs := []string{filepath.Join(dir, "a"), filepath.Join(dir, "linked")}
	if !slices.Equal(dirs, wantDirs) {
		t.Errorf("dirs = %q, want %q", dirs, wantDirs)
	}
	if want := []string{filepath.Join(dir, FileName)}; !slices.Equal(skills, want) {
		t.Errorf("skills = %q, want %q", skills, want)
	}

	linkedSkill := filepath.Join(dir, "a", FileName)
	must(os.Symlink(filepath.Join(other, "target.md"), linkedSkill))
	if _, skills := Read(filepath.Join(dir, "a")); !slices.Equal(skills, []string{linkedSkill}) {
		t.Errorf("a SKILL.md symlinked to a regular file is not read: %q", skills)
	}
	if dirs, skills := Read(filepath.Join(dir, "missing")); dirs != nil || skills != nil {
		t.Errorf("an unreadable directory gave %q, %q", dirs, skills)
	}
}

func TestSkipped(t *testing.T) {
	for name, want := range map[string]bool{".git": true, "node_modules": true, ".": true, "skills": false, "node_modules2": false} {
		if got := Skipped(name); got != want {
			t.Errorf("Skipped(%q) = %v, want %v", name, got, want)
		}
	}
}
