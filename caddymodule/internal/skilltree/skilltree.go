// Package skilltree is the one rule for which parts of a workspace's skills
// tree OpenClaw's skill loader reads. The audit lists SKILL.md files by it
// and the watcher watches the directories it descends into, so a change the
// watcher misses is one the audit would not see either.
package skilltree

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the name of the file that makes a directory a skill.
const FileName = "SKILL.md"

// Skipped reports whether the loader passes over a directory entry by its
// name: hidden entries and node_modules.
func Skipped(name string) bool {
	return strings.HasPrefix(name, ".") || name == "node_modules"
}

// Read lists what the loader takes from one directory: the subdirectories it
// descends into and the SKILL.md files it loads, as paths below dir. A
// symbolic link counts as what it points at; a dangling one, and every entry
// of a directory that cannot be read, is passed over.
func Read(dir string) (dirs, skills []string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if Skipped(e.Name()) {
			continue
		}
		full := filepath.Join(dir, e.Name())
		typ := e.Type()
		if typ&fs.ModeSymlink != 0 {
			st, err := os.Stat(full)
			if err != nil {
				continue
			}
			typ = st.Mode().Type()
		}
		switch {
		case typ.IsDir():
			dirs = append(dirs, full)
		case typ.IsRegular() && e.Name() == FileName:
			skills = append(skills, full)
		}
	}
	return dirs, skills
}
