package edge

import (
	"encoding/json"
	"html"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// denialBody is the JSON shape OpenAI-style API clients already parse.
type denialBody struct {
	Error denialError `json:"error"`
}

// denialError is the inner object of denialBody.
type denialError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// WriteDenial answers a refused request. API and WebSocket clients get
// status with {"error":{"type":"clawgate_<reason>","message":msg}} as
// application/json; browsers (Accept includes text/html and the request is
// not a WebSocket upgrade) get a short HTML page with the same, escaped.
// For 429 it sets Retry-After in whole seconds, rounded up, when
// retryAfter > 0. Responses are never cached. reason must be a short code
// and msg must hold no secret: both are shown to the caller.
func WriteDenial(w http.ResponseWriter, r *http.Request, status int, reason, msg string, retryAfter time.Duration) {
	typ := "clawgate_" + reasonCode(reason)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusTooManyRequests && retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		title := html.EscapeString(strconv.Itoa(status) + " " + http.StatusText(status))
		_, _ = w.Write([]byte("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + title +
			"</title></head>\n<body><h1>" + title + "</h1>\n<p>" + html.EscapeString(msg) +
			"</p>\n<p><small>clawgate: " + html.EscapeString(typ) + "</small></p></body></html>\n"))
		return
	}
	body, err := json.Marshal(denialBody{Error: denialError{Type: typ, Message: msg}})
	if err != nil {
		body = []byte(`{"error":{"type":"clawgate_error","message":""}}`)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// reasonCode keeps a reason to [a-z0-9_] so it is a stable, safe code.
func reasonCode(reason string) string {
	if reason == "" {
		return "denied"
	}
	b := []byte(reason)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		default:
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// wantsHTML reports whether the caller is a browser navigating to a page.
func wantsHTML(r *http.Request) bool {
	if r == nil || IsWebSocketUpgrade(r) {
		return false
	}
	for _, a := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(a), "text/html") {
			return true
		}
	}
	return false
}

// IsWebSocketUpgrade reports whether r asks for a WebSocket: an HTTP/1.1
// Upgrade with a "websocket" token and "upgrade" in Connection, or an
// HTTP/2 extended CONNECT with :protocol websocket.
func IsWebSocketUpgrade(r *http.Request) bool {
	if r == nil {
		return false
	}
	if r.Method == http.MethodConnect && strings.EqualFold(r.Header.Get(":protocol"), "websocket") {
		return true
	}
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// headerHasToken reports whether a comma-separated header holds token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
