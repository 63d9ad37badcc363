// Package browsertest drives a real Chromium over the DevTools protocol
// (chromedp) for clawgate's browser tests: it finds the browser, starts it
// headless with the flags a test needs to reach a tailnet site, and records
// what the page did (console, WebSocket frames) so a failing test can show
// it, next to a screenshot.
//
// Chromium is Debian's `chromium` package, which scripts/test installs. Tests
// that need it call Chromium: outside CI they skip when it is missing, under
// CI=true they fail, so a CI run can never pass by silently skipping the
// browser.
package browsertest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/clawgate/clawgate/caddymodule/internal/suites"
)

// installCommand is what a developer runs to make the skipped tests run.
const installCommand = "sudo apt-get install chromium (scripts/test installs it when run as root)"

// Chromium returns the path of the Chromium binary: $CLAWGATE_CHROMIUM, or
// chromium or chromium-browser on PATH. When there is none it skips the
// test, or fails it under CI=true. Under -short it skips the test: it belongs
// to the browser suite.
func Chromium(t testing.TB) string {
	t.Helper()
	suites.SkipShort(t, suites.Browser)
	path, err := FindChromium()
	if err == nil {
		return path
	}
	if suites.InCI() {
		t.Fatalf("Chromium is required under CI but unavailable: %v\nCI must install it before the tests (./scripts/test does)", err)
	}
	t.Skipf("Chromium is not installed (%v); %s to enable this test", err, installCommand)
	return ""
}

// FindChromium returns the path of the Chromium binary: $CLAWGATE_CHROMIUM,
// or chromium or chromium-browser on PATH.
func FindChromium() (string, error) {
	if p := os.Getenv("CLAWGATE_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("CLAWGATE_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither chromium nor chromium-browser is on PATH, and CLAWGATE_CHROMIUM is not set")
}

// SPKIHash returns the base64 SHA-256 of the public key of the first
// certificate in the PEM file at path, the form Chromium's
// --ignore-certificate-errors-spki-list takes.
func SPKIHash(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading certificate: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("reading certificate %s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parsing certificate %s: %w", path, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// Options are how a Browser reaches the site under test.
type Options struct {
	// HostRules is Chromium's --host-resolver-rules, e.g.
	// "MAP gw.example.ts.net 127.0.0.1:41234": the browser resolves the
	// site's name to a loopback forwarder, and the URL keeps the name.
	HostRules string
	// TrustSPKI are the base64 SHA-256 hashes of the public keys of the
	// test CA (see SPKIHash). A certificate chain holding one of them is
	// accepted as valid; nothing else is.
	TrustSPKI []string
	// Width and Height are the window's size; 0 means 1280×800.
	Width, Height int
}

// Browser is one headless Chromium with one tab, stopped when the test
// ends. It records the tab's console and WebSocket traffic.
type Browser struct {
	ctx context.Context
	t   testing.TB

	mu      sync.Mutex
	console []string
	ws      []string
	frames  []Frame
	sockets map[network.RequestID]*Socket
}

// Frame is one WebSocket message the page sent or received.
type Frame struct {
	Socket string // the WebSocket's URL
	Sent   bool   // the page sent it (false: the page received it)
	Data   string
	At     time.Time // when the test heard of it
}

// Socket is one WebSocket the page opened.
type Socket struct {
	URL    string
	Status int64 // the handshake's HTTP status, 0 until it answered
	Closed bool
}

// New starts Chromium at path with opts. The browser is stopped when t ends.
func New(t testing.TB, path string, opts Options) *Browser {
	t.Helper()
	w, h := opts.Width, opts.Height
	if w == 0 {
		w, h = 1280, 800
	}
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
		// As root Chromium refuses to start without it; the test's pages
		// are the project's own.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// No proxy from the environment: the browser reaches the site only
		// through the host rules.
		chromedp.Flag("no-proxy-server", true),
	)
	if opts.HostRules != "" {
		flags = append(flags, chromedp.Flag("host-resolver-rules", opts.HostRules))
	}
	if len(opts.TrustSPKI) > 0 {
		flags = append(flags, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(opts.TrustSPKI, ",")))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), flags...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{ctx: ctx, t: t, sockets: map[network.RequestID]*Socket{}}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; no timeout on it, as one would stop
	// the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium %s: %v", path, err)
	}
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("listening to Chromium's events: %v", err)
	}
	return b
}

// Context returns the tab's chromedp context, for chromedp.Run.
func (b *Browser) Context() context.Context { return b.ctx }

// record keeps the events a failure report needs. It runs on chromedp's
// reading goroutine, so it only copies.
func (b *Browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventWebSocketCreated:
		b.sockets[e.RequestID] = &Socket{URL: e.URL}
		b.ws = append(b.ws, "open "+e.URL)
	case *network.EventWebSocketHandshakeResponseReceived:
		if s := b.sockets[e.RequestID]; s != nil && e.Response != nil {
			s.Status = e.Response.Status
			b.ws = append(b.ws, fmt.Sprintf("handshake %s: %d", s.URL, e.Response.Status))
		}
	case *network.EventWebSocketFrameSent:
		b.frame(e.RequestID, true, e.Response)
	case *network.EventWebSocketFrameReceived:
		b.frame(e.RequestID, false, e.Response)
	case *network.EventWebSocketFrameError:
		b.ws = append(b.ws, fmt.Sprintf("error %s: %s", b.socketURL(e.RequestID), e.ErrorMessage))
	case *network.EventWebSocketClosed:
		if s := b.sockets[e.RequestID]; s != nil {
			s.Closed = true
		}
		b.ws = append(b.ws, "closed "+b.socketURL(e.RequestID))
	case *network.EventLoadingFailed:
		b.console = append(b.console, fmt.Sprintf("[network] %s failed: %s", e.RequestID, e.ErrorText))
	}
	if m, ok := consoleMessage(ev); ok {
		b.console = append(b.console, m)
	}
}

func (b *Browser) socketURL(id network.RequestID) string {
	if s := b.sockets[id]; s != nil {
		return s.URL
	}
	return string(id)
}

func (b *Browser) frame(id network.RequestID, sent bool, f *network.WebSocketFrame) {
	if f == nil {
		return
	}
	data := string(f.PayloadData)
	b.frames = append(b.frames, Frame{Socket: b.socketURL(id), Sent: sent, Data: data, At: time.Now()})
	dir := "<-"
	if sent {
		dir = "->"
	}
	if len(data) > 600 {
		data = data[:600] + "…(" + strconv.Itoa(len(f.PayloadData)) + " bytes)"
	}
	b.ws = append(b.ws, dir+" "+data)
}

// Frames returns every WebSocket message so far, in order.
func (b *Browser) Frames() []Frame {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Frame(nil), b.frames...)
}

// Sockets returns the WebSockets the page opened, in order.
func (b *Browser) Sockets() []Socket {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Socket
	for _, s := range b.sockets {
		out = append(out, *s)
	}
	return out
}

// Run runs a chromedp action on the tab, bounded by timeout.
func Run[T any](b *Browser, timeout time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// Text returns the text a person sees on the page: every text node of the
// document, shadow roots included, with runs of white space collapsed.
func (b *Browser) Text() (string, error) {
	return Run(b, 10*time.Second, chromedp.Evaluate[string](deepTextJS))
}

// deepTextJS walks the DOM into open shadow roots (the Control UI is made
// of web components) and joins the visible text.
const deepTextJS = `(() => {
	const out = [];
	const walk = (n) => {
		if (n.shadowRoot) walk(n.shadowRoot);
		for (const c of n.childNodes) {
			if (c.nodeType === Node.TEXT_NODE) out.push(c.textContent);
			else if (c.nodeType === Node.ELEMENT_NODE && !['SCRIPT', 'STYLE', 'TEMPLATE'].includes(c.tagName)) walk(c);
		}
	};
	walk(document.body || document.documentElement);
	return out.join(' ').replace(/\s+/g, ' ').trim();
})()`

// WaitText polls the page's text (see Text) until it contains every one of
// want, and returns it; on timeout it returns the last text and an error.
func (b *Browser) WaitText(timeout time.Duration, want ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	var text string
	var err error
	for {
		text, err = b.Text()
		if err == nil && containsAll(text, want) {
			return text, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return text, fmt.Errorf("page text never showed %q: %w", want, err)
			}
			return text, fmt.Errorf("page text never showed %q within %v; it shows: %.1500s", want, timeout, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitFrame waits until a WebSocket message matching match has been sent
// or received (counting every one since the browser started, from index
// from on), and returns it and its index.
func (b *Browser) WaitFrame(timeout time.Duration, from int, match func(Frame) bool) (Frame, int, error) {
	deadline := time.Now().Add(timeout)
	for {
		frames := b.Frames()
		for i := from; i < len(frames); i++ {
			if match(frames[i]) {
				return frames[i], i, nil
			}
		}
		if time.Now().After(deadline) {
			return Frame{}, 0, fmt.Errorf("no matching WebSocket message within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// Screenshot returns a PNG of the tab's viewport.
func (b *Browser) Screenshot() ([]byte, error) {
	return Run(b, 20*time.Second, chromedp.CaptureScreenshot())
}

// ReportOnFailure makes t, when it fails, save a screenshot of the tab into
// its artifact directory (kept with `go test -artifacts`) and log the
// page's console, its WebSocket traffic and its text.
func (b *Browser) ReportOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if png, err := b.Screenshot(); err != nil {
			t.Logf("screenshot: %v", err)
		} else {
			path := filepath.Join(artifactDir(t), "screenshot.png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Logf("screenshot: %v", err)
			} else {
				t.Logf("screenshot: %s (kept with go test -artifacts)", path)
			}
		}
		b.mu.Lock()
		console := strings.Join(b.console, "\n")
		ws := strings.Join(b.ws, "\n")
		b.mu.Unlock()
		t.Logf("page console:\n%s", orNone(console))
		t.Logf("page WebSocket log:\n%s", orNone(ws))
		if text, err := b.Text(); err == nil {
			t.Logf("page text: %.3000s", text)
		}
	})
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// consoleMessage formats a console call or an uncaught exception of the page.
func consoleMessage(ev any) (string, bool) {
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range e.Args {
			switch {
			case len(a.Value) > 0:
				parts = append(parts, string(a.Value))
			case a.Description != "":
				parts = append(parts, a.Description)
			default:
				parts = append(parts, string(a.Type))
			}
		}
		return "[" + string(e.Type) + "] " + strings.Join(parts, " "), true
	case *runtime.EventExceptionThrown:
		if d := e.ExceptionDetails; d != nil {
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			return "[exception] " + msg, true
		}
	}
	return "", false
}

// DeepText returns the text of every element matching the CSS selector,
// searching the document and every open shadow root, white space collapsed.
func (b *Browser) DeepText(selector string) ([]string, error) {
	sel, err := json.Marshal(selector)
	if err != nil {
		return nil, err
	}
	return Run(b, 10*time.Second, chromedp.Evaluate[[]string](fmt.Sprintf(deepQueryJS, sel)))
}

// deepQueryJS finds elements by selector (%s, a JSON string) in the
// document and in every open shadow root.
const deepQueryJS = `(() => {
	const sel = %s, out = [];
	const walk = (root) => {
		for (const el of root.querySelectorAll(sel)) out.push(el.textContent.replace(/\s+/g, ' ').trim());
		for (const el of root.querySelectorAll('*')) if (el.shadowRoot) walk(el.shadowRoot);
	};
	walk(document);
	return out;
})()`

// artifactDir is t's artifact directory, or a temporary one for a kind of
// test that has none.
func artifactDir(t testing.TB) string {
	if a, ok := t.(interface{ ArtifactDir() string }); ok {
		return a.ArtifactDir()
	}
	return t.TempDir()
}
