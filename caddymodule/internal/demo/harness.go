package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// harness is the testing.TB the demo hands to tailnettest, which was written
// for tests and takes a testing.TB for its temp dirs, cleanups and failures.
//
// Why a stand-in TB rather than a second, demo-only copy of tailnettest: the
// demo then runs exactly the tailnet the tests run, and there is one recipe
// to keep working against testcontrol. testing.TB has an unexported method,
// so the only way to satisfy it outside the testing package is to embed the
// interface; the embedded value stays nil and every exported method is
// implemented here, so nothing ever calls through it.
//
// Failures work as in a test: Error/Errorf record one, Fatal/Fatalf/FailNow
// (and Skip*, which no building block of the demo should reach) record one
// and abort by panicking with abortRun, which do recovers. As in a test, they
// must be called from the goroutine running do: a Fatalf on another goroutine
// would crash the process (the gateway's watchdog still stops OpenClaw then).
type harness struct {
	testing.TB // always nil; see above

	name   string
	root   string    // every TempDir lives under it; removed by finish
	log    io.Writer // where Log/Logf go (io.Discard unless verbose)
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cleanups []func()
	failures []string
	skipped  bool
	tmpSeq   int
}

// abortRun is the panic value that ends a run after Fatal, FailNow or Skip.
type abortRun struct{}

func newHarness(name, root string, log io.Writer) *harness {
	if log == nil {
		log = io.Discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &harness{name: name, root: root, log: log, ctx: ctx, cancel: cancel}
}

// do runs f, turning an abort into a recorded failure; it returns the
// failures recorded so far, joined, or nil.
func (h *harness) do(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(abortRun); !ok {
				panic(r)
			}
		}
		err = h.err()
	}()
	f()
	return nil
}

// err returns the failures recorded so far, or nil.
func (h *harness) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failures) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(h.failures, "; "))
}

// finish cancels Context, runs the cleanups last in, first out (a failing
// cleanup does not stop the others), removes the temp root and returns the
// failures recorded while doing so.
func (h *harness) finish() error {
	h.mu.Lock()
	before := len(h.failures)
	h.mu.Unlock()
	h.cancel()
	for {
		h.mu.Lock()
		n := len(h.cleanups)
		if n == 0 {
			h.mu.Unlock()
			break
		}
		f := h.cleanups[n-1]
		h.cleanups = h.cleanups[:n-1]
		h.mu.Unlock()
		_ = h.do(f)
	}
	if err := os.RemoveAll(h.root); err != nil {
		h.Errorf("removing %s: %v", h.root, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failures) == before {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(h.failures[before:], "; "))
}

func (h *harness) fail(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = append(h.failures, msg)
}

func (h *harness) ArtifactDir() string        { return h.TempDir() }
func (h *harness) Attr(key, value string)     { h.Logf("%s: %s", key, value) }
func (h *harness) Helper()                    {}
func (h *harness) Name() string               { return h.name }
func (h *harness) Output() io.Writer          { return h.log }
func (h *harness) Context() context.Context   { return h.ctx }
func (h *harness) Log(args ...any)            { fmt.Fprintln(h.log, args...) }
func (h *harness) Logf(f string, args ...any) { fmt.Fprintf(h.log, f+"\n", args...) }
func (h *harness) Error(args ...any)          { h.fail(strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }
func (h *harness) Errorf(f string, args ...any) {
	h.fail(fmt.Sprintf(f, args...))
}
func (h *harness) Fail() { h.fail("failed") }
func (h *harness) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.failures) > 0
}
func (h *harness) FailNow()                  { panic(abortRun{}) }
func (h *harness) Fatal(args ...any)         { h.Error(args...); panic(abortRun{}) }
func (h *harness) Fatalf(f string, a ...any) { h.Errorf(f, a...); panic(abortRun{}) }

// Skip and friends abort as a failure: the demo has no optional parts that
// may silently not run.
func (h *harness) Skip(args ...any) { h.skip(fmt.Sprint(args...)) }
func (h *harness) Skipf(f string, a ...any) {
	h.skip(fmt.Sprintf(f, a...))
}
func (h *harness) SkipNow() { h.skip("skipped") }
func (h *harness) skip(msg string) {
	h.mu.Lock()
	h.skipped = true
	h.mu.Unlock()
	h.Fatal("skipped: " + msg)
}
func (h *harness) Skipped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.skipped
}

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

// Setenv sets an environment variable of this process until finish, as
// t.Setenv does for a test.
func (h *harness) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		h.Fatalf("setting %s: %v", key, err)
	}
	h.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}

// Chdir changes the working directory until finish, as t.Chdir does.
func (h *harness) Chdir(dir string) {
	old, err := os.Getwd()
	if err != nil {
		h.Fatalf("chdir: %v", err)
	}
	if err := os.Chdir(dir); err != nil {
		h.Fatalf("chdir: %v", err)
	}
	h.Cleanup(func() { os.Chdir(old) })
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// TempDir returns a new directory under the run's root; finish removes the
// root, so unlike in a test there is no cleanup per directory.
func (h *harness) TempDir() string {
	h.mu.Lock()
	h.tmpSeq++
	n := h.tmpSeq
	h.mu.Unlock()
	dir := filepath.Join(h.root, fmt.Sprintf("%s%03d", unsafeName.ReplaceAllString(h.name, "_"), n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.Fatalf("making a temp dir: %v", err)
	}
	return dir
}
