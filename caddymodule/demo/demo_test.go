package demo

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
)

func TestGoModModule(t *testing.T) {
	tests := []struct {
		name, gomod, want string
	}{
		{"plain", "module github.com/clawgate/clawgate\n\ngo 1.26\n", "github.com/clawgate/clawgate"},
		{"comment and blank lines first", "// the project\n\nmodule example.com/x // trailing\n", "example.com/x"},
		{"quoted", "module \"example.com/q\"\n", "example.com/q"},
		{"tab", "module\texample.com/tab\n", "example.com/tab"},
		{"no module line", "go 1.26\n", ""},
		{"modulefoo is not module", "modulefoo bar\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := goModModule([]byte(tt.gomod)); got != tt.want {
				t.Errorf("goModModule(%q) = %q, want %q", tt.gomod, got, tt.want)
			}
		})
	}
}

func FuzzGoModModule(f *testing.F) {
	for _, s := range []string{"module github.com/clawgate/clawgate\n", "module \"a\"", "// x\nmodule y // z", "module", "module \"unterminated"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, gomod string) {
		got := goModModule([]byte(gomod))
		if strings.ContainsAny(got, "\n") {
			t.Errorf("goModModule(%q) = %q, spans lines", gomod, got)
		}
	})
}

func TestFindRepo(t *testing.T) {
	root := t.TempDir()
	write := func(rel, data string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("repo/go.mod", "module "+modulePath+"\n")
	write("repo/examples/other/go.mod", "module example.com/other\n")
	if err := os.MkdirAll(filepath.Join(root, "repo/examples/other/deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "elsewhere"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from    string
		want    string
		wantErr bool
	}{
		{"repo", "repo", false},
		{"repo/examples/other/deep", "repo", false}, // passes over the other module's go.mod
		{"elsewhere", "", true},
	}
	for _, tt := range tests {
		got, err := findRepo(filepath.Join(root, tt.from))
		if tt.wantErr {
			if err == nil {
				t.Errorf("findRepo(%s) = %q, want an error", tt.from, got)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tt.want) {
			t.Errorf("findRepo(%s) = %q, %v; want %s", tt.from, got, err, filepath.Join(root, tt.want))
		}
	}
}

func TestAuditReasons(t *testing.T) {
	tests := []struct {
		name       string
		msg        string
		ids, title []string
	}{
		{
			"two",
			"this gateway's OpenClaw config fails its security audit: a.b: First title; c.d: Second: with colon",
			[]string{"a.b", "c.d"}, []string{"First title", "Second: with colon"},
		},
		{"not an audit message", "no rule allows this request", nil, nil},
		{"empty list", "fails its security audit: ", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, titles := auditReasons(tt.msg)
			if !slices.Equal(ids, tt.ids) || !slices.Equal(titles, tt.title) {
				t.Errorf("auditReasons(%q) = %q, %q; want %q, %q", tt.msg, ids, titles, tt.ids, tt.title)
			}
		})
	}
}

func FuzzAuditReasons(f *testing.F) {
	f.Add("fails its security audit: a.b: t; c: d")
	f.Add("fails its security audit: ; : ;;")
	f.Add("nothing")
	f.Fuzz(func(t *testing.T, msg string) {
		ids, titles := auditReasons(msg)
		if len(ids) != len(titles) {
			t.Fatalf("auditReasons(%q): %d ids, %d titles", msg, len(ids), len(titles))
		}
		for _, id := range ids {
			if id == "" || strings.Contains(id, "; ") {
				t.Errorf("auditReasons(%q): bad id %q", msg, id)
			}
		}
	})
}

func TestWrap(t *testing.T) {
	tests := []struct {
		s     string
		width int
		want  []string
	}{
		{"", 10, []string{""}},
		{"short", 10, []string{"short"}},
		{"one two three four", 9, []string{"one two", "three", "four"}},
		{"a tools.elevated.allowFrom.whatsapp.wildcard b", 10, []string{"a", "tools.elevated.allowFrom.whatsapp.wildcard", "b"}},
		{"ünïcödé wörds here", 13, []string{"ünïcödé wörds", "here"}},
	}
	for _, tt := range tests {
		if got := wrap(tt.s, tt.width); !slices.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.s, tt.width, got, tt.want)
		}
	}
}

func FuzzWrap(f *testing.F) {
	f.Add("one two three four", 9)
	f.Add("a tools.elevated.allowFrom.whatsapp.wildcard b", 10)
	f.Fuzz(func(t *testing.T, s string, width int) {
		if width < 1 || width > 200 || !utf8.ValidString(s) {
			return
		}
		lines := wrap(s, width)
		if got, want := strings.Join(lines, " "), strings.Join(strings.Fields(s), " "); strings.TrimSpace(got) != want {
			t.Fatalf("wrap(%q, %d) = %q, loses or reorders words", s, width, lines)
		}
		for _, l := range lines {
			if utf8.RuneCountInString(l) > width && strings.Contains(l, " ") {
				t.Errorf("wrap(%q, %d): line %q is over width and could have been broken", s, width, l)
			}
		}
	})
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name     string
		res      Result
		wantIn   []string
		wantNot  []string
		verdict  string
		wantOKOf bool
	}{
		{
			name: "all good with the stand-in",
			res: Result{Backend: BackendStandIn, BackendDesc: "stand-in on 127.0.0.1:1", InstallHint: "cd x && y", Steps: []Step{
				{Name: "setup", Who: "-", Happened: "ready", Expected: "everything starts", OK: true},
				{Name: "1 allowed user", Who: alice, Happened: "hello-ok", Expected: "hello-ok", OK: true},
			}},
			wantIn:   []string{"STAND-IN", "for the real gateway: cd x && y", "1 allowed user", "✓ all 2 steps"},
			wantNot:  []string{"✗"},
			wantOKOf: true,
		},
		{
			name: "one bad step",
			res: Result{Backend: BackendOpenClaw, BackendDesc: "OpenClaw 1.2.3 on 127.0.0.1:1", Steps: []Step{
				{Name: "setup", Who: "-", Happened: "ready", Expected: "everything starts", OK: true},
				{Name: "2 stranger", Who: bob, Happened: "reached the gateway", Expected: "403 from clawgate"},
			}},
			wantIn:   []string{"the real OpenClaw gateway (OpenClaw 1.2.3", "✗ 1 of 2 steps"},
			wantNot:  []string{"STAND-IN"},
			wantOKOf: false,
		},
		{
			name:     "no steps is no success",
			res:      Result{},
			wantIn:   []string{"✗ 0 of 0 steps"},
			wantOKOf: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			WriteTable(&b, &tt.res)
			out := b.String()
			for _, s := range tt.wantIn {
				if !strings.Contains(out, s) {
					t.Errorf("table lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(out, s) {
					t.Errorf("table has %q:\n%s", s, out)
				}
			}
			if got := tt.res.OK(); got != tt.wantOKOf {
				t.Errorf("OK() = %v, want %v", got, tt.wantOKOf)
			}
			// Every step's row ends with its mark.
			for _, s := range tt.res.Steps {
				mark := "✓"
				if !s.OK {
					mark = "✗"
				}
				found := false
				for _, line := range strings.Split(out, "\n") {
					if strings.HasPrefix(line, s.Name+" ") && strings.HasSuffix(strings.TrimSpace(line), mark) {
						found = true
					}
				}
				if !found {
					t.Errorf("no row %q ending in %s:\n%s", s.Name, mark, out)
				}
			}
		})
	}
}

// TestStandIn drives the stand-in with the tour's own client, as clawgate
// would reach it: it must echo the forwarded identity, cap scopes by the
// forwarded header, and refuse a connection that carries no identity.
func TestStandIn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := startStandIn(l)
	defer s.close()
	url := "ws://" + l.Addr().String() + "/"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	forwarded := http.Header{
		"X-Forwarded-User":  {alice},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {siteHost},
		"X-Openclaw-Scopes": {"operator.read,operator.write"},
	}
	tests := []struct {
		name       string
		h          http.Header
		wantUser   string
		wantScopes []string
		wantCode   string
	}{
		{"forwarded identity", forwarded, alice, []string{"operator.read", "operator.write"}, ""},
		{"empty scope header means none", http.Header{
			"X-Forwarded-User": {alice}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {siteHost}, "X-Openclaw-Scopes": {""},
		}, alice, []string{}, ""},
		{"no identity", nil, "", nil, "UNAUTHORIZED"},
		{"no forwarding headers", http.Header{"X-Forwarded-User": {alice}}, "", nil, "UNAUTHORIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := openclawtest.Dial(ctx, http.DefaultClient, url, tt.h)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer g.Close()
			h, err := g.Connect(ctx, askedScopes, "")
			if tt.wantCode != "" {
				var ge *openclawtest.Error
				if !errors.As(err, &ge) || ge.Code != tt.wantCode {
					t.Fatalf("connect = %v, %v; want a %s refusal", h, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if !sameSet(h.Auth.Scopes, tt.wantScopes) || h.Server.Version != standInVersion {
				t.Errorf("hello-ok scopes %q version %q, want %q and %q", h.Auth.Scopes, h.Server.Version, tt.wantScopes, standInVersion)
			}
			emails, err := g.Self(ctx)
			if err != nil || !slices.Equal(emails, []string{tt.wantUser}) {
				t.Errorf("Self() = %q, %v; want [%s]", emails, err, tt.wantUser)
			}
		})
	}

	// close ends an open WebSocket rather than waiting for it.
	g, err := openclawtest.Dial(ctx, http.DefaultClient, url, forwarded)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Connect(ctx, askedScopes, ""); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close() hangs on an open WebSocket")
	}
}
