package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/openclawtest"
)

// standInVersion is what the stand-in reports as its server version, so no
// hello-ok from it can be mistaken for the real gateway's.
const standInVersion = "clawgate-demo-stand-in"

// standIn is the backend the demo falls back to when the real OpenClaw
// cannot be installed: a tiny HTTP + WebSocket server on loopback that
// speaks just enough of the gateway protocol for the tour (connect.challenge,
// connect → hello-ok, users.self) and, like OpenClaw in trusted-proxy mode,
// takes the user from the guard's default user header and caps scopes by x-openclaw-scopes.
// It reads nothing of openclaw.json; clawgate's gate audits that file either
// way.
type standIn struct {
	srv    *http.Server
	ctx    context.Context // every request's; canceled by close, which ends WebSockets
	cancel context.CancelFunc
	wg     sync.WaitGroup // Serve and the WebSocket handlers

	mu     sync.Mutex
	closed bool // set by close; no handler joins wg after it
}

// startStandIn serves on l until close.
func startStandIn(l net.Listener) *standIn {
	s := &standIn{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, map[string]any{"ok": true}) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
	mux.HandleFunc("POST /tools/invoke", func(w http.ResponseWriter, r *http.Request) {
		user, ok := trustedUser(r)
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"ok": false, "error": map[string]any{"type": "unauthorized", "message": "no trusted-proxy identity"}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "standIn": true, "user": user, "scopes": headerScopes(r)})
	})
	mux.HandleFunc("/", s.serveWS)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(l)
	}()
	return s
}

// close stops the server and its open WebSockets, which neither Shutdown
// nor Close of an http.Server reaches once hijacked.
func (s *standIn) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	_ = s.srv.Close()
	s.wg.Wait()
}

// trustedUser returns the identity clawgate forwarded, and reports whether
// the request carries the headers a trusted-proxy OpenClaw requires.
func trustedUser(r *http.Request) (string, bool) {
	user := strings.TrimSpace(r.Header.Get(edge.DefaultUserHeader))
	ok := user != "" && r.Header.Get("X-Forwarded-Proto") != "" && r.Header.Get("X-Forwarded-Host") != ""
	return user, ok
}

// headerScopes returns the scope cap clawgate sent; present but empty means
// no scopes.
func headerScopes(r *http.Request) []string {
	return strings.FieldsFunc(r.Header.Get("X-Openclaw-Scopes"), func(c rune) bool { return c == ',' || c == ' ' })
}

func (s *standIn) serveWS(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false})
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return c.Write(ctx, websocket.MessageText, b)
	}
	if err := send(map[string]any{"type": "event", "event": "connect.challenge", "payload": map[string]any{"nonce": randHex(16)}}); err != nil {
		return
	}
	user, trusted := trustedUser(r)
	capped := headerScopes(r)
	connected := false
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		var req struct {
			Type   string `json:"type"`
			ID     string `json:"id"`
			Method string `json:"method"`
			Params struct {
				Scopes []string `json:"scopes"`
			} `json:"params"`
		}
		if json.Unmarshal(msg, &req) != nil || req.Type != "req" {
			continue
		}
		res := map[string]any{"type": "res", "id": req.ID, "ok": true}
		switch {
		case req.Method == "connect" && !trusted:
			res["ok"] = false
			res["error"] = map[string]any{"code": "UNAUTHORIZED", "message": "no trusted-proxy identity", "details": map[string]any{"code": "TRUSTED_PROXY_USER_MISSING"}}
		case req.Method == "connect":
			connected = true
			granted := []string{}
			for _, sc := range req.Params.Scopes {
				if slices.Contains(capped, sc) {
					granted = append(granted, sc)
				}
			}
			res["payload"] = map[string]any{
				"type":     "hello-ok",
				"protocol": openclawtest.ProtocolVersion,
				"server":   map[string]any{"version": standInVersion, "connId": randHex(8)},
				"auth":     map[string]any{"method": "trusted-proxy", "role": "operator", "scopes": granted},
				// What clawgate forwarded, echoed for anyone reading the frames.
				"standIn": map[string]any{"forwardedUser": user, "forwardedScopes": capped},
			}
		case !connected:
			res["ok"] = false
			res["error"] = map[string]any{"code": "INVALID_REQUEST", "message": "connect first"}
		case req.Method == "users.self":
			res["payload"] = map[string]any{"profile": map[string]any{"emails": []string{user}}}
		default:
			res["payload"] = map[string]any{}
		}
		if err := send(res); err != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
