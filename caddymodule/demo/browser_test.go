package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clawgate/clawgate/caddymodule"
	"github.com/clawgate/clawgate/caddymodule/internal/browsertest"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/suites"
)

// TestDemoBrowser runs `clawgate-demo -browser` and opens the URL it prints
// in a real Chromium with no special flags, as a person would in their own
// browser: the real Control UI must land connected as alice, with no
// pairing page, and Ctrl-C (the context ending) must stop and remove
// everything. With CLAWGATE_DEMO_SCREENSHOT=<file.png> it saves what the
// page shows there (the README's screenshot).
func TestDemoBrowser(t *testing.T) {
	suites.SkipShort(t, suites.Demo)
	chromium := browsertest.Chromium(t)
	openclawtest.Require(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	urls := make(chan string, 1)
	type result struct {
		code int
		res  *Result
	}
	done := make(chan result, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		code, res := runCommand(ctx, &stdout, &stderr, flags{browser: true, browserReady: func(url string) { urls <- url }})
		done <- result{code, res}
	}()
	var url string
	select {
	case url = <-urls:
	case r := <-done:
		t.Fatalf("the demo ended (exit status %d) without serving the Control UI:\n%s%s", r.code, &stderr, &stdout)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("the demo's URL %q is not on loopback", url)
	}

	b := browsertest.New(t, chromium, browsertest.Options{})
	b.ReportOnFailure(t)
	if _, err := browsertest.Run(b, 60*time.Second, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigating to %s: %v", url, err)
	}
	if _, _, err := b.WaitFrame(60*time.Second, 0, func(fr browsertest.Frame) bool {
		return !fr.Sent && strings.Contains(fr.Data, `"hello-ok"`)
	}); err != nil {
		t.Errorf("the page's WebSocket never got hello-ok: %v", err)
	}
	var name, status []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		name, _ = b.DeepText(".sidebar-identity-card__name")
		status, _ = b.DeepText(".sidebar-footer-bar > [role=status]")
		if len(name) > 0 && name[0] == "alice" && len(status) > 0 && status[0] == "Connected" {
			break
		}
	}
	if len(name) == 0 || name[0] != "alice" || len(status) == 0 || status[0] != "Connected" {
		t.Errorf("the Control UI's identity card shows %q %q, want alice Connected", name, status)
	}
	if text, err := b.Text(); err != nil || strings.Contains(text, "Approve this browser") || strings.Contains(text, "waiting for approval") {
		t.Errorf("the page asks for a pairing approval (%v): %.500s", err, text)
	}
	if path := os.Getenv("CLAWGATE_DEMO_SCREENSHOT"); path != "" {
		time.Sleep(2 * time.Second) // let the UI settle its layout and fonts
		png, err := b.Screenshot()
		if err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			t.Errorf("saving the screenshot: %v", err)
		}
	}

	cancel() // Ctrl-C
	r := <-done
	out := stdout.String()
	t.Logf("the demo's output:\n%s%s", &stderr, out)
	if r.code != 0 || !r.res.OK() {
		t.Errorf("exit status %d, OK() = %v; want 0 and true", r.code, r.res.OK())
	}
	if !strings.Contains(out, url) || !strings.Contains(out, "Ctrl-C") {
		t.Errorf("the output does not print %s and how to stop", url)
	}
	nctx, ncancel := context.WithTimeout(context.Background(), time.Second)
	defer ncancel()
	if err := caddymodule.WaitNodesClosed(nctx); err != nil {
		t.Errorf("after the demo: %v", err)
	}
	if _, err := os.Stat(r.res.Dir); r.res.Dir == "" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %q after the demo: %v, want it removed", r.res.Dir, err)
	}
}
