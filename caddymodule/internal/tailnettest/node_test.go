package tailnettest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawgate/clawgate/tsnet"
	"tailscale.com/envknob"
)

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, fmt.Sprintf(format, args...))
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// count returns how many lines contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func startNode(t *testing.T, cfg tsnet.Config, logf, userLogf tsnet.Logf) *tsnet.Node {
	t.Helper()
	node, err := tsnet.New(cfg, logf, userLogf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return node
}

// TestAuthKeyNeverLogged registers a node with an auth key that the control
// server requires, with every log line captured, and looks for the key.
func TestAuthKeyNeverLogged(t *testing.T) {
	key := fmt.Sprintf("tskey-auth-kTEST%d-SECRETPART", time.Now().UnixNano())
	tn := New(t, RequireAuthKey(key))

	// Start must opt the process out of log upload; clear the knob first so
	// an earlier test cannot have done it for us.
	prev := os.Getenv("TS_NO_LOGS_NO_SUPPORT")
	envknob.Setenv("TS_NO_LOGS_NO_SUPPORT", "")
	t.Cleanup(func() { envknob.Setenv("TS_NO_LOGS_NO_SUPPORT", prev) })

	var logs logBuffer
	cfg := tn.Config(t, "gw")
	cfg.AuthKey = key
	node := startNode(t, cfg, logs.logf, logs.logf)
	if len(node.TailnetIPs()) == 0 {
		t.Fatal("node with the right auth key has no tailnet IPs")
	}
	if !envknob.NoLogsNoSupport() {
		t.Error("TS_NO_LOGS_NO_SUPPORT not set after Start: logs would be uploaded")
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	all := logs.String()
	if len(logs.lines) < 10 {
		t.Fatalf("captured only %d log lines; the capture is not working", len(logs.lines))
	}
	if strings.Contains(all, key) || strings.Contains(all, "SECRETPART") {
		t.Errorf("the auth key appears in the logs:\n%s", all)
	}
	// Nor in the state directory, which tsnet fills with state and logs.
	err := filepath.WalkDir(cfg.StateDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "SECRETPART") {
			t.Errorf("the auth key appears in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The control server really checks the key: without it, no node.
	bad := tn.Config(t, "intruder")
	bad.AuthKey = "tskey-auth-wrong"
	n2, err := tsnet.New(bad, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n2.Start(ctx); err == nil {
		t.Fatal("node with a wrong auth key started")
	}
}

// TestLoginURLOnce starts a node that needs an interactive login and checks
// that the login URL reaches userLogf exactly once, even though tsnet
// repeats it.
func TestLoginURLOnce(t *testing.T) {
	tn := New(t, RequireAuth())
	var ulogs, logs logBuffer
	node, err := tsnet.New(tn.Config(t, "gw"), logs.logf, ulogs.logf)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- node.Start(ctx) }()

	authURL := ""
	for authURL == "" {
		select {
		case err := <-started:
			t.Fatalf("Start returned %v before the login", err)
		case <-ctx.Done():
			t.Fatal("no login URL logged")
		case <-time.After(10 * time.Millisecond):
		}
		for _, l := range strings.Split(ulogs.String(), "\n") {
			if _, u, ok := strings.Cut(l, "visit "); ok && strings.Contains(u, "/auth/") {
				authURL = u
			}
		}
	}
	// tsnet's own loop prints on every state change and every 5 s; give it
	// the chance to repeat the URL before completing the login.
	time.Sleep(5500 * time.Millisecond)
	if !tn.Control.CompleteAuth(authURL) {
		t.Fatalf("CompleteAuth(%q) = false", authURL)
	}
	if err := <-started; err != nil {
		t.Fatalf("Start after login: %v", err)
	}
	if n := ulogs.count(authURL); n != 1 {
		t.Errorf("login URL logged %d times to userLogf, want 1:\n%s", n, ulogs.String())
	}
}

// TestStartGivesUpWithContext checks that Start returns when its context
// ends while the node waits for a login, and that Close still works.
func TestStartGivesUpWithContext(t *testing.T) {
	tn := New(t, RequireAuth())
	node, err := tsnet.New(tn.Config(t, "gw"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := node.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start() = %v, want context.DeadlineExceeded", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- node.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung")
	}
}

func TestCertificatesDisabled(t *testing.T) {
	tn := New(t, WithoutHTTPS())
	node := startNode(t, tn.Config(t, "gw"), nil, nil)
	ctx := context.Background()
	_, err := node.CertDomains(ctx)
	if !errors.Is(err, tsnet.ErrHTTPSDisabled) {
		t.Fatalf("CertDomains() = %v, want ErrHTTPSDisabled", err)
	}
	if !strings.Contains(err.Error(), "admin console") {
		t.Errorf("CertDomains() error %q does not say how to fix it", err)
	}
	_, err = node.GetCertificate(&tls.ClientHelloInfo{ServerName: "gw." + Domain})
	if !errors.Is(err, tsnet.ErrHTTPSDisabled) {
		t.Fatalf("GetCertificate() = %v, want ErrHTTPSDisabled", err)
	}
}

// TestCertificateFailureExplained asks for a certificate where HTTPS is on
// but no ACME server answers (offline), and checks the error names the
// node's certificate domains.
func TestCertificateFailureExplained(t *testing.T) {
	// Never reach Let's Encrypt from a test: point ACME at a closed port.
	t.Setenv("TS_DEBUG_ACME_DIRECTORY_URL", "http://127.0.0.1:1/directory")
	tn := New(t)
	node := startNode(t, tn.Config(t, "gw"), nil, nil)
	_, err := node.GetCertificate(&tls.ClientHelloInfo{ServerName: "gw." + Domain})
	if err == nil {
		t.Fatal("GetCertificate() succeeded without an ACME server")
	}
	if errors.Is(err, tsnet.ErrHTTPSDisabled) || !strings.Contains(err.Error(), "gw."+Domain) {
		t.Errorf("GetCertificate() = %v, want an error naming the cert domain", err)
	}
	if _, err := node.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Error("GetCertificate(no SNI) succeeded")
	}
}

func TestNodeLifecycle(t *testing.T) {
	tn := New(t)

	t.Run("close without start", func(t *testing.T) {
		node, err := tsnet.New(tn.Config(t, "idle"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := node.WhoIs(context.Background(), "100.64.0.1:1"); !errors.Is(err, tsnet.ErrNotStarted) {
			t.Errorf("WhoIs before Start = %v, want ErrNotStarted", err)
		}
		if ips := node.TailnetIPs(); ips != nil {
			t.Errorf("TailnetIPs before Start = %v", ips)
		}
		if err := node.Close(); err != nil {
			t.Fatal(err)
		}
		if err := node.Start(context.Background()); !errors.Is(err, tsnet.ErrClosed) {
			t.Errorf("Start after Close = %v, want ErrClosed", err)
		}
		if _, err := node.Listen("tcp", ":80"); !errors.Is(err, tsnet.ErrClosed) {
			t.Errorf("Listen after Close = %v, want ErrClosed", err)
		}
	})

	t.Run("listen before start, concurrent close", func(t *testing.T) {
		cfg := tn.Config(t, "gw")
		node, err := tsnet.New(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := node.Listen("tcp", ":80") // launches without waiting
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := node.Start(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if err := node.Close(); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		select {
		case <-node.Done():
		default:
			t.Fatal("Done() open after Close returned")
		}
		if _, err := ln.Accept(); err == nil {
			t.Error("listener still accepting after Close")
		}
		// Close waited for the last state write: removing the state dir
		// now leaves nothing behind.
		if err := os.RemoveAll(cfg.StateDir); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if _, err := os.Stat(cfg.StateDir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("state dir reappeared after Close: %v", err)
		}
	})
}
