package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testInvalidConfigWithRealGateway edits the real gateway's openclaw.json to
// one OpenClaw's schema refuses (an unknown key, as a hand edit or an older
// tutorial leaves behind) while alice holds a WebSocket: clawgate closes it
// and answers 503 clawgate_config_invalid naming the path, never the value;
// restoring the original bytes lets her back in. The running gateway must
// have refused the edit as well, and the real `openclaw security audit` must
// refuse the same file on the same path.
func testInvalidConfigWithRealGateway(t *testing.T, f *ocFixture) {
	path := f.gw.ConfigPath()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := json.Unmarshal(orig, &tree); err != nil {
		t.Fatalf("the gateway's openclaw.json is not plain JSON: %v", err)
	}
	gw, _ := tree["gateway"].(map[string]any)
	if gw == nil {
		t.Fatal("the gateway's openclaw.json has no gateway object")
	}
	controlUi, _ := gw["controlUi"].(map[string]any)
	if controlUi == nil {
		controlUi = map[string]any{}
	}
	controlUi["allowInsecureAuth"] = "secret-looking-value-4711"
	gw["controlUi"] = controlUi
	invalid, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writeFileAtomic(t, path, orig) })
	logBefore := readGatewayLog(t, f.gw)

	ctx := testCtx(t)
	oc := dialOC(t, ctx, f.alice, nil)
	connectOC(t, ctx, oc, []string{"operator.read"}, "")
	wsClosed := make(chan time.Time, 1)
	go func() {
		oc.WaitClosed(ctx)
		wsClosed <- time.Now()
	}()

	edited := time.Now()
	writeFileAtomic(t, path, invalid)
	status, body, took := pollPost(t, f.alice, edited, http.StatusServiceUnavailable)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("%v after the invalid edit POST /tools/invoke still answers %d %s, want 503", gateWithin, status, body)
	}
	t.Logf("gate reaction: 503 after %v", took.Round(time.Millisecond))
	var denial struct {
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal([]byte(body), &denial); err != nil {
		t.Fatalf("503 body is not JSON: %v: %q", err, body)
	}
	if denial.Error.Type != "clawgate_config_invalid" {
		t.Errorf("503 error.type = %q, want clawgate_config_invalid: %s", denial.Error.Type, body)
	}
	if !strings.Contains(denial.Error.Message, "gateway.controlUi") {
		t.Errorf("503 message does not name gateway.controlUi: %s", body)
	}
	for _, leak := range []string{"secret-looking-value-4711", f.gw.Dir} {
		if strings.Contains(body, leak) {
			t.Errorf("503 body reveals %q: %s", leak, body)
		}
	}
	select {
	case at := <-wsClosed:
		t.Logf("gate reaction: alice's WebSocket closed after %v", at.Sub(edited).Round(time.Millisecond))
		if d := at.Sub(edited); d > gateWithin {
			t.Errorf("alice's WebSocket closed %v after the edit, want within %v", d, gateWithin)
		}
	case <-time.After(time.Until(edited.Add(gateWithin))):
		t.Fatalf("alice's WebSocket is still open %v after the invalid edit", gateWithin)
	}

	// OpenClaw refused the edit too: the running gateway kept its previous
	// config, which is what the file no longer describes.
	const skipped = "[reload] config reload skipped (invalid config): gateway.controlUi"
	reload := waitGatewayLogAfter(t, f.gw, len(logBefore), skipped)
	for _, line := range strings.Split(reload, "\n") {
		if strings.Contains(line, "[reload]") {
			t.Logf("gw.log: %s", line)
		}
	}

	restored := time.Now()
	writeFileAtomic(t, path, orig)
	oc = dialUntilServed(t, ctx, f.alice, restored)
	if oc == nil {
		t.Fatalf("clawgate still refuses alice's WebSocket %v after openclaw.json was restored", gateWithin)
	}
	connectOC(t, ctx, oc, []string{"operator.read"}, "")
	t.Logf("gate recovery: alice's hello-ok %v after the restore", time.Since(restored).Round(time.Millisecond))
	if status, body := ocPost(t, f.alice, "/tools/invoke", `{"tool":"sessions_list","args":{}}`, nil); status != http.StatusOK {
		t.Errorf("POST /tools/invoke after the restore = %d %s, want 200", status, body)
	}

	// The oracle: the real CLI refuses the same file, on the same path.
	dir := t.TempDir()
	cfgCopy := filepath.Join(dir, "openclaw.json")
	if err := os.WriteFile(cfgCopy, invalid, 0o600); err != nil {
		t.Fatal(err)
	}
	// `security audit` exits 1 on a config it refuses, so the script is run
	// here rather than through openclawtest.Audit, which wants exit 0.
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "openclaw.sh"), "audit", cfgCopy, filepath.Join(dir, "state"))
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running the real openclaw security audit: %v", err)
	}
	var refusal struct {
		OK     *bool
		Issues []struct{ Path, Message string }
	}
	if err := json.Unmarshal(out, &refusal); err != nil {
		t.Fatalf("decoding the real CLI's answer: %v: %s", err, out)
	}
	var paths []string
	for _, i := range refusal.Issues {
		paths = append(paths, i.Path)
	}
	if refusal.OK == nil || *refusal.OK || len(paths) != 1 || paths[0] != "gateway.controlUi" {
		t.Errorf("the real `openclaw security audit` on the invalid config (%v): ok %v, issue paths %q; want a refusal on gateway.controlUi", err, refusal.OK, paths)
	}
}
