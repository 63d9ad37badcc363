//go:build linux

package watch

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "openclaw.json")
	writeFile(t, cfg, "{}")
	ext := filepath.Join(dir, "extensions")
	mkdir(t, ext)
	absent := filepath.Join(dir, "credentials")
	inputs := []Input{{cfg, Content}, {ext, Dir}, {absent, Meta}, {filepath.Join(dir, "skills"), Tree}}

	tests := []struct {
		name    string
		change  func(t *testing.T)
		changed bool
	}{
		{"nothing", func(t *testing.T) {}, false},
		{"a sibling nobody reads", func(t *testing.T) { writeFile(t, filepath.Join(dir, "other"), "x") }, false},
		{"inside a tree (trees are not fingerprinted)", func(t *testing.T) { mkdir(t, filepath.Join(dir, "skills", "a")) }, false},
		{"content", func(t *testing.T) { writeFile(t, cfg, `{"gateway":{}}`) }, true},
		{"mode", func(t *testing.T) { os.Chmod(cfg, 0o644) }, true},
		{"atomic rename", func(t *testing.T) {
			writeFile(t, cfg+".tmp", `{"gateway":{}}`)
			os.Rename(cfg+".tmp", cfg)
		}, true},
		{"an entry of a directory", func(t *testing.T) { mkdir(t, filepath.Join(ext, "plugin")) }, true},
		{"an absent path appears", func(t *testing.T) { mkdir(t, absent) }, true},
		{"a path becomes a symlink", func(t *testing.T) {
			os.Remove(absent)
			os.Symlink(ext, absent)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := Fingerprint(inputs, nil)
			tt.change(t)
			if got := Fingerprint(inputs, nil) != before; got != tt.changed {
				t.Errorf("fingerprint changed = %v, want %v", got, tt.changed)
			}
		})
	}
	if Fingerprint(inputs, []string{"A=1"}) == Fingerprint(inputs, []string{"A=2"}) {
		t.Error("a change of the environment leaves the fingerprint alone")
	}
}

// waitChange waits for the watcher to report something, generously, and
// returns what it took.
func waitChange(t *testing.T, w *Watcher) (bool, []string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-w.C():
			plain, trees, err := w.Take()
			if err != nil {
				t.Fatalf("Take: %v", err)
			}
			if plain || len(trees) > 0 {
				return plain, trees
			}
		case <-deadline:
			t.Fatal("no change reported within 10 s")
		}
	}
}

// quiet drains what the watcher reported so far.
func quiet(w *Watcher) {
	time.Sleep(50 * time.Millisecond)
	w.Take()
	select {
	case <-w.C():
	default:
	}
}

func TestWatcherReportsChanges(t *testing.T) {
	w, err := New()
	if errors.Is(err, ErrUnsupported) {
		t.Skip("no change notifications on this system")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	mkdir(t, state)
	cfg := filepath.Join(state, "openclaw.json")
	writeFile(t, cfg, "{}")
	inc := filepath.Join(state, "inc.json5")
	writeFile(t, inc, "{}")
	outside := filepath.Join(dir, "outside")
	mkdir(t, outside)
	linkTarget := filepath.Join(outside, "target.json")
	writeFile(t, linkTarget, "{}")
	linked := filepath.Join(state, "linked.json")
	if err := os.Symlink(linkTarget, linked); err != nil {
		t.Fatal(err)
	}
	ext := filepath.Join(state, "extensions")
	profiles := filepath.Join(state, "agents", "main", "agent", "auth-profiles.json")
	skills := filepath.Join(state, "workspace", "skills")
	mkdir(t, filepath.Join(skills, "one", "deep", "deeper"))
	writeFile(t, filepath.Join(skills, "one", "SKILL.md"), "# one")
	elsewhere := filepath.Join(dir, "elsewhere-skill")
	mkdir(t, elsewhere)
	writeFile(t, filepath.Join(elsewhere, "SKILL.md"), "# elsewhere")

	inputs := []Input{
		{cfg, Content}, {state, Meta}, {inc, Content}, {linked, Content},
		{ext, Dir}, {profiles, Meta}, {skills, Tree},
	}
	unwatched, err := w.Watch(inputs)
	if err != nil || len(unwatched) > 0 {
		t.Fatalf("Watch = %v, %v", unwatched, err)
	}

	tests := []struct {
		name   string
		change func(t *testing.T)
		tree   bool // the change is inside the skills tree
	}{
		{"config written in place", func(t *testing.T) { writeFile(t, cfg, `{"gateway":{}}`) }, false},
		{"config saved by atomic rename", func(t *testing.T) {
			writeFile(t, cfg+".tmp", `{"gateway":{"bind":"lan"}}`)
			if err := os.Rename(cfg+".tmp", cfg); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"config saved again after the rename (the new file is watched)", func(t *testing.T) { writeFile(t, cfg, `{}`) }, false},
		{"config chmod", func(t *testing.T) { os.Chmod(cfg, 0o644) }, false},
		{"state dir chmod", func(t *testing.T) { os.Chmod(state, 0o755) }, false},
		{"include edited", func(t *testing.T) { writeFile(t, inc, `{"x":1}`) }, false},
		{"symlink target edited", func(t *testing.T) { writeFile(t, linkTarget, `{"x":1}`) }, false},
		{"symlink target chmod", func(t *testing.T) { os.Chmod(linkTarget, 0o666) }, false},
		{"absent directory appears", func(t *testing.T) { mkdir(t, ext) }, false},
		{"absent file's ancestor appears", func(t *testing.T) { mkdir(t, filepath.Join(state, "agents")) }, false},
		{"new directory deep in the tree", func(t *testing.T) { mkdir(t, filepath.Join(skills, "one", "deep", "deeper", "new")) }, true},
		{"new symlinked skill", func(t *testing.T) {
			if err := os.Symlink(elsewhere, filepath.Join(skills, "linked")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"SKILL.md removed", func(t *testing.T) { os.Remove(filepath.Join(skills, "one", "SKILL.md")) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := w.Watch(inputs); err != nil {
				t.Fatal(err)
			}
			quiet(w)
			tt.change(t)
			plain, trees := waitChange(t, w)
			if tt.tree {
				if len(trees) != 1 || trees[0] != skills {
					t.Errorf("trees = %v, want [%s]", trees, skills)
				}
				if err := w.RescanTree(skills); err != nil {
					t.Fatal(err)
				}
			} else if !plain {
				t.Errorf("plain = false, trees = %v; want a plain change", trees)
			}
		})
	}

	t.Run("a directory created in the tree after a rescan is watched", func(t *testing.T) {
		mkdir(t, filepath.Join(skills, "two"))
		waitChange(t, w)
		if err := w.RescanTree(skills); err != nil {
			t.Fatal(err)
		}
		quiet(w)
		writeFile(t, filepath.Join(skills, "two", "SKILL.md"), "# two")
		if _, trees := waitChange(t, w); len(trees) != 1 {
			t.Errorf("trees = %v", trees)
		}
	})

	t.Run("the symlinked skill's directory is watched through the link", func(t *testing.T) {
		if err := w.RescanTree(skills); err != nil {
			t.Fatal(err)
		}
		quiet(w)
		mkdir(t, filepath.Join(elsewhere, "sub"))
		if _, trees := waitChange(t, w); len(trees) != 1 {
			t.Errorf("trees = %v", trees)
		}
	})

	t.Run("an unrelated sibling is not reported", func(t *testing.T) {
		quiet(w)
		writeFile(t, filepath.Join(state, "unrelated.log"), "x")
		select {
		case <-w.C():
			if plain, trees, _ := w.Take(); plain || len(trees) > 0 {
				t.Errorf("reported plain=%v trees=%v for a file no input names", plain, trees)
			}
		case <-time.After(300 * time.Millisecond):
		}
	})
}

func TestWatcherBudget(t *testing.T) {
	w, err := New()
	if errors.Is(err, ErrUnsupported) {
		t.Skip("no change notifications on this system")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "openclaw.json")
	writeFile(t, cfg, "{}")
	skills := filepath.Join(dir, "skills")
	for i := range 50 {
		mkdir(t, filepath.Join(skills, "s"+string(rune('a'+i%26))+string(rune('a'+i/26))))
	}

	h, _ := getHub()
	h.mu.Lock()
	held := len(h.wds)
	h.mu.Unlock()
	defer SetBudget(SetBudget(held + 10))

	unwatched, err := w.Watch([]Input{{cfg, Content}, {skills, Tree}})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if len(unwatched) != 1 || unwatched[0] != skills {
		t.Errorf("unwatched = %v, want the tree that does not fit", unwatched)
	}
	if n := w.Watches(); n == 0 || n > 10 {
		t.Errorf("the watcher holds %d watches; want the plain ones only", n)
	}

	SetBudget(held)
	w2, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	other := filepath.Join(t.TempDir(), "other.json")
	writeFile(t, other, "{}")
	if _, err := w2.Watch([]Input{{other, Content}}); !errors.Is(err, ErrBudget) {
		t.Errorf("Watch over budget = %v, want ErrBudget", err)
	}
	if _, _, err := w2.Take(); !errors.Is(err, ErrBudget) {
		t.Errorf("Take after a failed Watch = %v, want the error that broke tracking", err)
	}
}

func TestWatcherCloseReleases(t *testing.T) {
	w, err := New()
	if errors.Is(err, ErrUnsupported) {
		t.Skip("no change notifications on this system")
	}
	if err != nil {
		t.Fatal(err)
	}
	h, _ := getHub()
	count := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.wds)
	}
	before := count()
	dir := t.TempDir()
	skills := filepath.Join(dir, "skills")
	for _, d := range []string{"a/b", "c/d", "e"} {
		mkdir(t, filepath.Join(skills, d))
	}
	writeFile(t, filepath.Join(dir, "openclaw.json"), "{}")
	if _, err := w.Watch([]Input{{filepath.Join(dir, "openclaw.json"), Content}, {skills, Tree}}); err != nil {
		t.Fatal(err)
	}
	if count() <= before {
		t.Fatal("Watch added no watches")
	}
	w.Close()
	if got := count(); got != before {
		t.Errorf("%d watches after Close, want %d", got, before)
	}
}

// BenchmarkFingerprint measures one poll of a gateway's plain inputs: about
// the number a small state dir has.
func BenchmarkFingerprint(b *testing.B) {
	dir := b.TempDir()
	var inputs []Input
	for i := range 20 {
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			b.Fatal(err)
		}
		inputs = append(inputs, Input{p, Content})
	}
	env := os.Environ()
	b.ReportAllocs()
	for b.Loop() {
		Fingerprint(inputs, env)
	}
}
