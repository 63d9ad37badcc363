// Package multiproc runs clawgate's `caddy` binary as separate processes
// for tests that need more than one Caddy at a time (a front door and
// gateway hosts, two front doors sharing storage): Caddy's running config
// is process-global, so one test process can hold only one.
//
// The binary is built once per test process from ./cmd/caddy of this
// module (go build, offline: modules come from the module cache). Each
// process gets its own directory (HOME, XDG dirs, the Caddyfile, its log,
// an admin socket), is stopped with SIGTERM when the test ends, and its log
// is printed when the test has failed. The processes join whatever the
// Caddyfile says: for an in-process test tailnet, its control URL.
package multiproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary returns the path of clawgate's caddy binary, building it on the
// first call of the test process. The build goes to a temporary directory
// removed by Cleanup (call it from TestMain, or leave it to the OS's temp
// cleaning).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = os.MkdirTemp("", "clawgate-caddy-")
		if err != nil {
			buildErr = err
			return
		}
		begin := time.Now()
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "caddy"), "./cmd/caddy")
		cmd.Dir = root
		// Offline: everything the build needs is in the module cache.
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
			return
		}
		t.Logf("multiproc: built ./cmd/caddy in %v", time.Since(begin).Round(100*time.Millisecond))
	})
	if buildErr != nil {
		t.Fatalf("multiproc: %v", buildErr)
	}
	return filepath.Join(buildDir, "caddy")
}

// Cleanup removes the binary Binary built, if any.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// moduleRoot finds the directory of this module's go.mod from the working
// directory (a test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Process is one running Caddy.
type Process struct {
	// Name identifies the process in logs and failures.
	Name string
	// Dir is the process's own directory: HOME, XDG dirs, Caddyfile, log.
	Dir string
	// AdminSocket is a unix socket path for the Caddyfile's `admin` option
	// (admin unix/<AdminSocket>): each process needs its own endpoint, and
	// none should be on TCP.
	AdminSocket string

	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	stopped bool
	mu      sync.Mutex
}

// Options adjust a process.
type Options struct {
	// Env is added to the process's environment.
	Env []string
}

// Start writes the Caddyfile that caddyfile returns for the process (which
// knows its Dir and AdminSocket) and runs `caddy run` on it. The process is
// stopped when the test ends; if the test failed, its log is printed.
func Start(t testing.TB, name string, caddyfile func(p *Process) string, opts Options) *Process {
	t.Helper()
	bin := Binary(t)
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "cg-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{Name: name, Dir: dir, AdminSocket: filepath.Join(dir, "admin.sock"), logPath: filepath.Join(dir, "caddy.log"), done: make(chan struct{})}
	for _, sub := range []string{"home", "data", "config"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile(p)), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.Env = append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"TS_NO_LOGS_NO_SUPPORT=true",
		// A test's network namespace may have nothing but loopback, where
		// the test tailnet lives; without this a node waits for a network.
		"TS_ASSUME_NETWORK_UP_FOR_TEST=1",
	)
	p.cmd.Env = append(p.cmd.Env, opts.Env...)
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("multiproc: starting %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("multiproc: log of %s:\n%s", name, p.Log())
		}
		os.RemoveAll(dir)
	})
	return p
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process: SIGTERM (Caddy stops gracefully: its tailnet
// nodes log out of nothing and close), SIGKILL after 30 seconds. It waits
// until the process has exited; calling it again does nothing.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.stopped = true
	p.mu.Unlock()
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("multiproc: %s did not stop within 30s of SIGTERM; killing it", p.Name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Admin sends a request to the process's admin socket and returns the
// status and body.
func (p *Process) Admin(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", p.AdminSocket)
	}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b, err
}

// WaitLog waits until the process's log contains substr, failing the test
// after timeout or when the process exits first.
func (p *Process) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), substr) {
			return
		}
		if p.Exited() {
			t.Fatalf("multiproc: %s exited (%v) before logging %q:\n%s", p.Name, p.waitErr, substr, p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("multiproc: %s did not log %q within %v", p.Name, substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
