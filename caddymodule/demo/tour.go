package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
	"github.com/clawgate/clawgate/caddymodule/internal/tailnettest"
)

// stepTimeout bounds one step; a healthy step takes well under a second.
const stepTimeout = 30 * time.Second

// tour runs the steps in order. Each runs whatever the others did: a failed
// step is a ✗ in its row, not the end of the demo.
func (r *run) tour(ctx context.Context) {
	steps := []func(context.Context) Step{
		r.stepAllowed,
		r.stepStranger,
		r.stepSpoofed,
		r.stepInsecure,
		r.stepFixed,
	}
	for i, step := range steps {
		if ctx.Err() != nil {
			r.res.Steps = append(r.res.Steps, Step{Name: "interrupted", Who: "-", Happened: "the demo was interrupted", Expected: "all steps run"})
			return
		}
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		t0 := time.Now()
		s := step(sctx)
		cancel()
		s.Took = time.Since(t0)
		mark := "✓"
		if !s.OK {
			mark = "✗"
		}
		fmt.Fprintf(r.out, "[%d/%d] %s %s (%s): %s  %s\n", i+1, len(steps), mark, s.Name, s.Who, s.Happened, secs(s.Took))
		for _, d := range s.Details {
			fmt.Fprintf(r.out, "        %s\n", d)
		}
		s.Name = strconv.Itoa(i+1) + " " + s.Name
		r.res.Steps = append(r.res.Steps, s)
	}
	fmt.Fprintln(r.out)
}

// siteWS is the WebSocket URL clients use: clawgate's site on its node.
func siteWS() string {
	if sitePort == 80 {
		return "ws://" + siteHost + "/"
	}
	return "ws://" + siteHost + ":" + strconv.Itoa(sitePort) + "/"
}

// session is what a gateway said about one connection.
type session struct {
	user   string   // users.self
	scopes []string // hello-ok auth.scopes
}

func (s session) String() string {
	return "hello-ok as " + s.user + ", scopes " + scopeList(s.scopes)
}

// connectAs opens a WebSocket from node through clawgate with the extra
// headers h, completes the gateway's handshake and asks who it is.
func (r *run) connectAs(ctx context.Context, node *tailnettest.Node, h http.Header) (session, error) {
	hc := node.HTTPClient()
	defer hc.CloseIdleConnections()
	c, err := openclawtest.Dial(ctx, hc, siteWS(), h)
	if err != nil {
		return session{}, err
	}
	defer c.Close()
	hello, err := c.Connect(ctx, askedScopes, "")
	if err != nil {
		return session{}, fmt.Errorf("connect: %w", err)
	}
	emails, err := c.Self(ctx)
	if err != nil {
		return session{}, err
	}
	if len(emails) == 0 {
		return session{}, errors.New("users.self: the profile has no email")
	}
	return session{user: emails[0], scopes: hello.Auth.Scopes}, nil
}

// scopeList formats scopes for a table cell.
func scopeList(scopes []string) string {
	if len(scopes) == 0 {
		return "none"
	}
	return strings.Join(scopes, ", ")
}

// describe turns a failed connection into a table cell.
func describe(err error) string {
	var ref *openclawtest.Refusal
	if errors.As(err, &ref) {
		s := fmt.Sprintf("upgrade refused: %d %s", ref.Status, ref.Type)
		if ids, _ := auditReasons(ref.Message); len(ids) > 0 {
			s += ": " + strings.Join(ids, ", ")
		} else if ref.Message != "" {
			s += " (" + ref.Message + ")"
		}
		return s
	}
	var gw *openclawtest.Error
	if errors.As(err, &gw) {
		return "the gateway refused: " + gw.Error()
	}
	return err.Error()
}

func (r *run) stepAllowed(ctx context.Context) Step {
	s := Step{
		Name:     "allowed user",
		Who:      alice,
		Expected: "hello-ok as alice, operator.admin capped away",
	}
	got, err := r.connectAs(ctx, r.alice, nil)
	if err != nil {
		s.Happened = describe(err)
		return s
	}
	s.Happened = "WebSocket " + got.String()
	s.OK = got.user == alice && sameSet(got.scopes, allowedScopes)
	s.Details = []string{"asked for " + scopeList(askedScopes) + "; clawgate's rule caps alice at " + scopeList(allowedScopes)}
	return s
}

func (r *run) stepStranger(ctx context.Context) Step {
	s := Step{
		Name:     "stranger",
		Who:      bob,
		Expected: "403 from clawgate",
	}
	got, err := r.connectAs(ctx, r.bob, nil)
	if err == nil {
		s.Happened = "reached the gateway: " + got.String()
		return s
	}
	s.Happened = describe(err)
	var ref *openclawtest.Refusal
	s.OK = errors.As(err, &ref) && ref.Status == http.StatusForbidden && ref.Type == "clawgate_forbidden"
	return s
}

func (r *run) stepSpoofed(ctx context.Context) Step {
	s := Step{
		Name:     "spoofed headers",
		Who:      alice,
		Expected: "headers stripped: still alice, no operator.admin",
	}
	spoof := http.Header{
		"X-Forwarded-User":     {bob},
		"X-Openclaw-Scopes":    {"operator.admin"},
		"Tailscale-User-Login": {bob},
		"X-Forwarded-For":      {"203.0.113.9"},
	}
	s.Details = []string{"sent x-forwarded-user: " + bob + ", x-openclaw-scopes: operator.admin, tailscale-user-login: " + bob + ", x-forwarded-for: 203.0.113.9"}
	got, err := r.connectAs(ctx, r.alice, spoof)
	if err != nil {
		s.Happened = describe(err)
		return s
	}
	s.Happened = "sent x-forwarded-user: bob, x-openclaw-scopes: operator.admin; the gateway saw " + got.String()
	s.OK = got.user == alice && sameSet(got.scopes, allowedScopes)
	return s
}

// stepInsecure makes openclaw.json insecure while alice holds a WebSocket:
// clawgate must close it and refuse new traffic with the audit's reasons,
// while the gateway itself keeps running. stepFixed undoes the edit.
func (r *run) stepInsecure(ctx context.Context) Step {
	s := Step{
		Name:     "insecure config",
		Who:      alice,
		Expected: "503 with the audit's reasons; open WebSocket closed",
	}
	insecure, err := r.insecureConfig()
	if err != nil {
		s.Happened = err.Error()
		return s
	}

	// alice's open session, which the gate must end.
	hc := r.alice.HTTPClient()
	defer hc.CloseIdleConnections()
	g, err := openclawtest.Dial(ctx, hc, siteWS(), nil)
	if err != nil {
		s.Happened = "alice could not connect before the edit: " + describe(err)
		return s
	}
	defer g.Close()
	if _, err := g.Connect(ctx, askedScopes, ""); err != nil {
		s.Happened = "alice could not connect before the edit: " + describe(err)
		return s
	}
	type end struct {
		at     time.Time
		status websocket.StatusCode // -1: cut without a close frame
	}
	closed := make(chan end, 1)
	go func() {
		err := g.WaitClosed(ctx)
		closed <- end{time.Now(), websocket.CloseStatus(err)}
	}()

	edited := time.Now()
	if err := writeFileAtomic(r.configPath(), insecure); err != nil {
		s.Happened = err.Error()
		return s
	}
	s.Details = append(s.Details, `edited openclaw.json: tools.elevated = {enabled: true, allowFrom: {whatsapp: ["*"]}}`)

	var ref *openclawtest.Refusal
	for {
		_, err := r.connectAs(ctx, r.alice, nil)
		if errors.As(err, &ref) && ref.Status == http.StatusServiceUnavailable {
			break
		}
		ref = nil
		if time.Since(edited) > reactWithin || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ref == nil {
		s.Happened = fmt.Sprintf("still served %s after the edit", secs(reactWithin))
		return s
	}
	refusedAfter := time.Since(edited)
	ids, titles := auditReasons(ref.Message)
	s.Happened = fmt.Sprintf("%d %s after %s, reasons: %s", ref.Status, ref.Type, millis(refusedAfter), strings.Join(ids, ", "))
	for i := range ids {
		s.Details = append(s.Details, "reason: "+ids[i]+": "+titles[i])
	}

	var closedAfter time.Duration
	select {
	case e := <-closed:
		closedAfter = e.at.Sub(edited)
		s.Happened += fmt.Sprintf("; her open WebSocket closed after %s", millis(closedAfter))
		// clawgate cuts the connection; a gateway would send a close frame.
		by := "cut by clawgate, no close frame"
		if e.status != -1 {
			by = fmt.Sprintf("closed with status %d (%s)", int(e.status), e.status)
		}
		s.Details = append(s.Details, "alice's open WebSocket: "+by)
	case <-time.After(time.Until(edited.Add(reactWithin))):
		s.Happened += "; her open WebSocket stayed open"
	}

	// The gateway itself took the edit and runs on: it is clawgate that
	// refuses, not a gateway that crashed.
	status, herr := httpGet(ctx, "http://127.0.0.1:"+strconv.Itoa(r.port)+"/healthz")
	if herr == nil && status == http.StatusOK {
		s.Details = append(s.Details, "the gateway itself still answers /healthz on 127.0.0.1:"+strconv.Itoa(r.port)+": clawgate is what refuses")
	} else {
		s.Details = append(s.Details, fmt.Sprintf("the gateway's own /healthz: %d %v", status, herr))
	}
	s.OK = ref.Type == "clawgate_audit_failed" && slices.Contains(ids, insecureCheck) && closedAfter > 0 &&
		herr == nil && status == http.StatusOK && !strings.Contains(ref.Message, r.root)
	return s
}

// stepFixed restores the original openclaw.json and waits for alice to get
// back in.
func (r *run) stepFixed(ctx context.Context) Step {
	s := Step{
		Name:     "config fixed",
		Who:      alice,
		Expected: "traffic resumes: hello-ok as alice",
	}
	fixed := time.Now()
	if err := writeFileAtomic(r.configPath(), r.origConfig); err != nil {
		s.Happened = err.Error()
		return s
	}
	s.Details = []string{"restored openclaw.json"}
	for {
		got, err := r.connectAs(ctx, r.alice, nil)
		if err == nil {
			s.Happened = fmt.Sprintf("%s after the fix: %s", millis(time.Since(fixed)), got)
			s.OK = got.user == alice && sameSet(got.scopes, allowedScopes)
			return s
		}
		var ref *openclawtest.Refusal
		if !errors.As(err, &ref) || ref.Status != http.StatusServiceUnavailable || time.Since(fixed) > reactWithin || ctx.Err() != nil {
			s.Happened = fmt.Sprintf("%s after the fix: %s", millis(time.Since(fixed)), describe(err))
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// insecureConfig is the gateway's config with elevated exec opened to anyone
// on WhatsApp.
func (r *run) insecureConfig() ([]byte, error) {
	var tree map[string]any
	if err := json.Unmarshal(r.origConfig, &tree); err != nil {
		return nil, fmt.Errorf("reading openclaw.json: %w", err)
	}
	tree["tools"] = map[string]any{"elevated": map[string]any{
		"enabled":   true,
		"allowFrom": map[string]any{"whatsapp": []string{"*"}},
	}}
	b, err := json.MarshalIndent(tree, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding openclaw.json: %w", err)
	}
	return append(b, '\n'), nil
}

// writeFileAtomic replaces path through a rename, as editors and config
// tools do, so neither OpenClaw nor clawgate ever reads half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".demo.tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing openclaw.json: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing openclaw.json: %w", err)
	}
	return nil
}

// millis formats a reaction time in milliseconds.
func millis(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" }

// auditReasons splits the message of a clawgate_audit_failed denial,
// "...fails its security audit: <checkId>: <title>; <checkId>: <title>", into
// check IDs and titles.
func auditReasons(msg string) (ids, titles []string) {
	_, list, ok := strings.Cut(msg, "fails its security audit: ")
	if !ok {
		return nil, nil
	}
	for _, r := range strings.Split(list, "; ") {
		id, title, ok := strings.Cut(r, ": ")
		if !ok || id == "" {
			continue
		}
		ids = append(ids, id)
		titles = append(titles, title)
	}
	return ids, titles
}
