package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/clawgate/clawgate/caddymodule/internal/skilltree"
)

// One inotify instance serves the whole process: instances are a scarce
// per-user resource (fs.inotify.max_user_instances, often 128), and a reload
// of Caddy must neither leak nor exhaust them. The standard library's
// syscall package is used rather than github.com/illarion/gonotify/v3 (which
// Tailscale links): that package drops IN_Q_OVERFLOW, whose watch descriptor
// has no path, so a lost event could not be noticed, and never closes its
// descriptor.

// Event masks. A watched object reports its own changes; a watched directory
// also reports the creation, removal, renaming and metadata changes of its
// entries, by name.
const (
	selfMask    = syscall.IN_ATTRIB | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	contentMask = syscall.IN_CLOSE_WRITE | syscall.IN_MODIFY
	entryMask   = syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_ATTRIB
)

// reason is why a watcher holds a watch descriptor: which events count, on the
// object itself (child == "") or on one named entry (child != "") or on any
// entry (child == "*"), and whether they are about a tree.
type reason struct {
	tree  string // the tree's root, "" for plain inputs
	child string
	mask  uint32
}

func (r reason) matches(name string, mask uint32) bool {
	if mask&r.mask == 0 {
		return false
	}
	switch r.child {
	case "":
		return name == ""
	case "*":
		return true
	}
	return name == r.child
}

// hub is the process's inotify instance and who listens to which descriptor.
type hub struct {
	mu   sync.Mutex
	fd   int
	file *os.File
	err  error // the instance broke; every watcher is told
	wds  map[int32]*wdState
}

type wdState struct {
	mask uint32
	subs map[*Watcher]map[reason]int // reference counts
}

var (
	hubOnce sync.Once
	theHub  *hub
	hubErr  error
)

// budget is the number of inotify watches the process may hold, shared by
// every watcher: half the user's fs.inotify.max_user_watches (other programs
// of the same user need theirs), at most 262144. A tree that does not fit is
// left to its owner to poll; a plain input that does not fit breaks change
// tracking, and its owner polls everything.
var budget atomic.Int64

func init() {
	b := 8192
	if data, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 0 {
			b = n / 2
		}
	}
	budget.Store(int64(min(b, 262144)))
}

// SetBudget sets how many inotify watches the process may hold and returns
// the previous budget. Watches already held are kept.
func SetBudget(n int) int { return int(budget.Swap(int64(n))) }

func getHub() (*hub, error) {
	hubOnce.Do(func() {
		fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
		if err != nil {
			hubErr = fmt.Errorf("starting inotify: %w", err)
			return
		}
		theHub = &hub{fd: fd, file: os.NewFile(uintptr(fd), "inotify"), wds: map[int32]*wdState{}}
		go theHub.read()
	})
	return theHub, hubErr
}

// read dispatches events until the descriptor fails, then tells every watcher.
func (h *hub) read() {
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	for {
		n, err := h.file.Read(buf)
		if err != nil {
			h.fail(fmt.Errorf("reading inotify events: %w", err))
			return
		}
		h.mu.Lock()
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + syscall.SizeofInotifyEvent + int(ev.Len)
			if end > n {
				break
			}
			name := strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:end]), "\x00")
			off = end
			h.dispatch(ev.Wd, name, ev.Mask)
		}
		h.mu.Unlock()
	}
}

// dispatch tells the watchers an event concerns. The caller holds h.mu.
func (h *hub) dispatch(wd int32, name string, mask uint32) {
	if mask&syscall.IN_Q_OVERFLOW != 0 {
		// Events were lost: anything may have changed.
		seen := map[*Watcher]bool{}
		for _, st := range h.wds {
			for w := range st.subs {
				if !seen[w] {
					seen[w] = true
					w.overflow()
				}
			}
		}
		return
	}
	st := h.wds[wd]
	if st == nil {
		return
	}
	gone := mask&(syscall.IN_IGNORED|syscall.IN_UNMOUNT|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0
	for w, reasons := range st.subs {
		for r := range reasons {
			if gone || r.matches(name, mask) {
				w.mark(r.tree)
			}
		}
	}
	if mask&syscall.IN_IGNORED != 0 {
		// The kernel dropped the watch (its object was deleted, or the
		// filesystem unmounted). Owners were told and re-establish what they
		// need; their stale references are released as no-ops (the kernel
		// allocates descriptors cyclically, so the number is not reused soon).
		delete(h.wds, wd)
	}
}

func (h *hub) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return
	}
	h.err = err
	for _, st := range h.wds {
		for w := range st.subs {
			w.broken(err)
		}
	}
}

// add watches path for w with reason r and returns the descriptor.
func (h *hub) add(w *Watcher, path string, r reason) (int32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return -1, h.err
	}
	if int64(len(h.wds)) >= budget.Load() {
		return -1, ErrBudget
	}
	want := r.mask | selfMask
	if r.child != "" {
		want |= entryMask
	}
	raw, err := syscall.InotifyAddWatch(h.fd, path, want|syscall.IN_MASK_ADD)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return -1, ErrBudget
		}
		return -1, err
	}
	wd := int32(raw)
	st := h.wds[wd]
	if st == nil {
		st = &wdState{subs: map[*Watcher]map[reason]int{}}
		h.wds[wd] = st
	}
	st.mask |= want
	if st.subs[w] == nil {
		st.subs[w] = map[reason]int{}
	}
	st.subs[w][r]++
	return wd, nil
}

// release drops one reference of w to wd for r, and the watch with the last.
func (h *hub) release(w *Watcher, wd int32, r reason) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.wds[wd]
	if st == nil || st.subs[w] == nil {
		return
	}
	if st.subs[w][r]--; st.subs[w][r] <= 0 {
		delete(st.subs[w], r)
	}
	if len(st.subs[w]) == 0 {
		delete(st.subs, w)
	}
	if len(st.subs) == 0 {
		delete(h.wds, wd)
		if h.err == nil {
			_, _ = syscall.InotifyRmWatch(h.fd, uint32(wd))
		}
	}
}

// held is one watch a Watcher holds.
type held struct {
	path string
	r    reason
}

// Watcher watches one owner's inputs. Its methods are safe for concurrent use.
type Watcher struct {
	h      *hub
	notify chan struct{}

	mu       sync.Mutex
	plain    bool            // a plain input may have changed
	trees    map[string]bool // trees that may have changed
	err      error           // change tracking broke
	plainWds map[held]int32
	treeWds  map[string]map[held]int32
	closed   bool
}

// New returns a Watcher, or ErrUnsupported (or the reason inotify is
// unavailable), in which case the owner polls Fingerprint.
func New() (*Watcher, error) {
	h, err := getHub()
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	err = h.err
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &Watcher{h: h, notify: make(chan struct{}, 1), trees: map[string]bool{}, plainWds: map[held]int32{}, treeWds: map[string]map[held]int32{}}, nil
}

// C receives a value when something may have changed; Take says what.
func (w *Watcher) C() <-chan struct{} { return w.notify }

// Take returns and clears what may have changed since the last call: whether
// a plain input did, which trees did, and whether change tracking broke (then
// the owner polls from now on; the error stays).
func (w *Watcher) Take() (plain bool, trees []string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	plain, w.plain = w.plain, false
	for t := range w.trees {
		trees = append(trees, t)
	}
	clear(w.trees)
	return plain, trees, w.err
}

func (w *Watcher) signal() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// mark, overflow and broken are called by the hub with h.mu held.
func (w *Watcher) mark(tree string) {
	w.mu.Lock()
	if tree == "" {
		w.plain = true
	} else {
		w.trees[tree] = true
	}
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) overflow() {
	w.mu.Lock()
	w.plain = true
	for t := range w.treeWds {
		w.trees[t] = true
	}
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) broken(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.plain = true
	w.mu.Unlock()
	w.signal()
}

// Watch makes the watcher follow exactly inputs: it watches what it did not,
// stops watching what is no longer listed, and re-adds every path (a path
// now naming another file gets that file watched). A Tree is walked the
// first time it is listed and again on RescanTree. It returns the trees that
// did not fit in the watch budget, which the owner must poll, and an error
// when change tracking broke, after which the owner polls everything.
func (w *Watcher) Watch(inputs []Input) (unwatched []string, err error) {
	want := map[held]bool{}
	trees := map[string]bool{}
	for _, in := range inputs {
		if in.Kind == Tree {
			trees[filepath.Clean(in.Path)] = true
			continue
		}
		for _, hd := range plainWatches(in) {
			want[hd] = true
		}
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errors.New("watcher closed")
	}
	old := w.plainWds
	w.plainWds = map[held]int32{}
	var gone []string
	for t := range w.treeWds {
		if !trees[t] {
			gone = append(gone, t)
		}
	}
	w.mu.Unlock()
	for hd := range want {
		wd, err := w.h.add(w, hd.path, hd.r)
		if err != nil {
			if isAbsent(err) {
				// Gone between the stat and the watch: the parent's watch
				// reports its return.
				continue
			}
			w.setPlain(old)
			return nil, w.fail(fmt.Errorf("watching %s: %w", hd.path, err))
		}
		w.mu.Lock()
		if prev, ok := w.plainWds[hd]; ok {
			// Two inputs asked for the same watch: one reference is enough.
			w.mu.Unlock()
			w.h.release(w, prev, hd.r)
			w.mu.Lock()
		}
		w.plainWds[hd] = wd
		w.mu.Unlock()
	}
	for hd, wd := range old {
		w.h.release(w, wd, hd.r)
	}
	for _, t := range gone {
		w.dropTree(t)
	}
	for t := range trees {
		w.mu.Lock()
		_, have := w.treeWds[t]
		w.mu.Unlock()
		if have {
			continue
		}
		if err := w.RescanTree(t); err != nil {
			if errors.Is(err, ErrBudget) {
				unwatched = append(unwatched, t)
				continue
			}
			return unwatched, err
		}
	}
	return unwatched, nil
}

func (w *Watcher) setPlain(m map[held]int32) {
	w.mu.Lock()
	for k, v := range m {
		w.plainWds[k] = v
	}
	w.mu.Unlock()
}

func (w *Watcher) fail(err error) error {
	w.broken(err)
	return err
}

func isAbsent(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR)
}

// plainWatches lists the watches one non-tree input needs: the path itself,
// its directory (for a replacement by rename, a removal, a creation), the
// directory of its symlink's target, and for a path that does not exist the
// nearest existing ancestor, for the entry on the way to it.
func plainWatches(in Input) []held {
	p := filepath.Clean(in.Path)
	var out []held
	fi, err := os.Lstat(p)
	if err != nil {
		return ancestorWatch(p, "")
	}
	self := reason{mask: selfMask}
	switch in.Kind {
	case Content:
		self.mask |= contentMask
	case Dir:
		if fi.IsDir() {
			out = append(out, held{p, reason{child: "*", mask: syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO}})
		}
	}
	out = append(out, held{p, self})
	if dir := filepath.Dir(p); dir != p {
		out = append(out, held{dir, reason{child: filepath.Base(p), mask: entryMask}})
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if dir := filepath.Dir(real); dir != real {
				out = append(out, held{dir, reason{child: filepath.Base(real), mask: entryMask}})
			}
		} else {
			// A dangling link: watch where its target would appear.
			target, _ := os.Readlink(p)
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			out = append(out, ancestorWatch(filepath.Clean(target), "")...)
		}
	}
	return out
}

// ancestorWatch watches the nearest existing ancestor of the absent path p
// for the entry that leads to p.
func ancestorWatch(p, tree string) []held {
	for cur := p; ; {
		parent := filepath.Dir(cur)
		if parent == cur {
			return nil
		}
		if fi, err := os.Stat(parent); err == nil && fi.IsDir() {
			return []held{{parent, reason{tree: tree, child: filepath.Base(cur), mask: entryMask}}}
		}
		cur = parent
	}
}

// treeReason is what counts inside a tree: entries appearing, going,
// renamed, or changing type or mode, and the directory itself changing.
func treeReason(root string) reason {
	return reason{tree: root, child: "*", mask: syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_ATTRIB | selfMask}
}

// RescanTree walks the tree at root again and watches every directory in it
// (each before it is read, so an entry created during the walk is reported),
// releasing the watches of directories that left it. It returns ErrBudget
// wrapped when the tree does not fit in the watch budget; its watches are
// then released and the owner polls it.
func (w *Watcher) RescanTree(root string) error {
	root = filepath.Clean(root)
	w.mu.Lock()
	old := w.treeWds[root]
	w.mu.Unlock()
	now := map[held]int32{}
	keep := func(hd held) error {
		wd, err := w.h.add(w, hd.path, hd.r)
		if err != nil {
			return err
		}
		if prev, ok := now[hd]; ok {
			w.h.release(w, prev, hd.r)
		}
		now[hd] = wd
		return nil
	}
	releaseAll := func(m map[held]int32) {
		for hd, wd := range m {
			w.h.release(w, wd, hd.r)
		}
	}
	// The root's own entry in its parent, or the way to an absent root.
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		for _, hd := range ancestorWatch(root, root) {
			if err := keep(hd); err != nil && !isAbsent(err) {
				releaseAll(now)
				return w.treeFail(root, err)
			}
		}
		if fi != nil {
			// Not a directory: watch the entry itself via its parent.
			if err := keep(held{filepath.Dir(root), reason{tree: root, child: filepath.Base(root), mask: entryMask}}); err != nil && !isAbsent(err) {
				releaseAll(now)
				return w.treeFail(root, err)
			}
		}
	} else {
		if err := keep(held{filepath.Dir(root), reason{tree: root, child: filepath.Base(root), mask: entryMask}}); err != nil && !isAbsent(err) {
			releaseAll(now)
			return w.treeFail(root, err)
		}
		r := treeReason(root)
		visited := map[string]bool{}
		queue := []string{root}
		for len(queue) > 0 {
			dir := queue[0]
			queue = queue[1:]
			real, err := filepath.EvalSymlinks(dir)
			if err != nil || visited[real] {
				continue
			}
			visited[real] = true
			if err := keep(held{dir, r}); err != nil {
				if isAbsent(err) {
					continue
				}
				releaseAll(now)
				return w.treeFail(root, err)
			}
			dirs, _ := skilltree.Read(dir)
			queue = append(queue, dirs...)
		}
	}
	releaseAll(old)
	w.mu.Lock()
	w.treeWds[root] = now
	w.mu.Unlock()
	return nil
}

// treeFail gives up watching a tree: over budget, the owner polls it;
// anything else breaks change tracking.
func (w *Watcher) treeFail(root string, err error) error {
	w.dropTree(root)
	if errors.Is(err, ErrBudget) {
		return fmt.Errorf("watching tree %s: %w", root, err)
	}
	return w.fail(fmt.Errorf("watching tree %s: %w", root, err))
}

func (w *Watcher) dropTree(root string) {
	w.mu.Lock()
	m := w.treeWds[root]
	delete(w.treeWds, root)
	w.mu.Unlock()
	for hd, wd := range m {
		w.h.release(w, wd, hd.r)
	}
}

// Watches reports how many watches the watcher holds.
func (w *Watcher) Watches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.plainWds)
	for _, m := range w.treeWds {
		n += len(m)
	}
	return n
}

// Close releases every watch.
func (w *Watcher) Close() {
	w.mu.Lock()
	w.closed = true
	plain := w.plainWds
	trees := w.treeWds
	w.plainWds, w.treeWds = map[held]int32{}, map[string]map[held]int32{}
	w.mu.Unlock()
	for hd, wd := range plain {
		w.h.release(w, wd, hd.r)
	}
	for _, m := range trees {
		for hd, wd := range m {
			w.h.release(w, wd, hd.r)
		}
	}
}
