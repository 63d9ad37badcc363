// Package watch tells its owner when a file, a directory or a tree it depends
// on may have changed: through the operating system's change notifications
// where they serve (inotify on Linux), and through cheap stat fingerprints
// that the owner polls where they do not. It reports "may have changed", never
// what changed: the owner re-reads what it depends on.
package watch

import (
	"errors"
	"hash/fnv"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"syscall"
)

// Kind says what of a path its owner depends on.
type Kind uint8

const (
	// Meta is a path's existence, type, mode and owner, through a symlink
	// too.
	Meta Kind = iota + 1
	// Content is Meta and a file's contents.
	Content
	// Dir is Meta and a directory's list of entries.
	Dir
	// Tree is a directory and everything below it that skilltree.Read
	// descends into: symlinked directories followed, entries whose names
	// start with "." and node_modules left out.
	Tree
)

func (k Kind) String() string {
	switch k {
	case Meta:
		return "meta"
	case Content:
		return "content"
	case Dir:
		return "dir"
	case Tree:
		return "tree"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Input is one path and what of it the owner depends on.
type Input struct {
	Path string
	Kind Kind
}

// ErrUnsupported is returned by New where the operating system offers no
// change notifications this package uses; the owner polls Fingerprint.
var ErrUnsupported = errors.New("change notifications are not supported on this system")

// ErrBudget reports that the process's watch budget (or the kernel's limit)
// is spent.
var ErrBudget = errors.New("inotify watch limit reached")

// Fingerprint hashes what stat says about every input that is not a Tree: a
// change of a path's type, mode, owner, inode or link target changes it, and
// so does a change of a Content file's size or modification time or of a
// Dir's modification time (a directory's entries changed). Environ, when not
// nil, is hashed too. Comparing two fingerprints is the polling fallback.
func Fingerprint(inputs []Input, environ []string) uint64 {
	h := fnv.New64a()
	var buf []byte
	sorted := make([]Input, 0, len(inputs))
	for _, in := range inputs {
		if in.Kind != Tree {
			sorted = append(sorted, in)
		}
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Path != sorted[j].Path {
			return sorted[i].Path < sorted[j].Path
		}
		return sorted[i].Kind < sorted[j].Kind
	})
	for _, in := range sorted {
		buf = append(buf[:0], in.Path...)
		buf = append(buf, 0, byte(in.Kind))
		if fi, err := os.Lstat(in.Path); err == nil {
			buf = appendStat(buf, fi, in.Kind)
			if fi.Mode()&fs.ModeSymlink != 0 {
				target, _ := os.Readlink(in.Path)
				buf = append(buf, target...)
				if st, err := os.Stat(in.Path); err == nil {
					buf = appendStat(buf, st, in.Kind)
				} else {
					buf = append(buf, "dangling"...)
				}
			}
		} else {
			buf = append(buf, "absent"...)
		}
		h.Write(buf)
	}
	for _, kv := range environ {
		h.Write([]byte(kv))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

func appendStat(buf []byte, fi fs.FileInfo, kind Kind) []byte {
	buf = strconv.AppendUint(buf, uint64(fi.Mode()), 16)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		buf = strconv.AppendUint(append(buf, ':'), uint64(st.Uid), 10)
		buf = strconv.AppendUint(append(buf, ':'), uint64(st.Gid), 10)
		buf = strconv.AppendUint(append(buf, ':'), uint64(st.Ino), 10)
		buf = strconv.AppendUint(append(buf, ':'), uint64(st.Dev), 10)
		buf = strconv.AppendUint(append(buf, ':'), uint64(st.Nlink), 10)
	}
	if kind == Content || kind == Dir {
		buf = strconv.AppendInt(append(buf, ':'), fi.Size(), 10)
		buf = strconv.AppendInt(append(buf, ':'), fi.ModTime().UnixNano(), 10)
	}
	return append(buf, ';')
}
