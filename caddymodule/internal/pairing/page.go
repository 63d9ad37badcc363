package pairing

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

// Held is the answer to a request from a device that may not pass yet.
type Held struct {
	// Status is the HTTP status.
	Status int
	// Type is the error type, such as "clawgate_pairing_pending".
	Type string
	// Message says what happened and what to do.
	Message string
	// Code, Device, Node and Gateway identify a pending device; empty
	// otherwise.
	Code, Device, Node, Gateway string
}

type heldBody struct {
	Error heldError `json:"error"`
}

type heldError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
	Device  string `json:"device,omitempty"`
	Node    string `json:"node,omitempty"`
	Gateway string `json:"gateway,omitempty"`
}

// WriteHeld answers a held request: a page that shows the pairing code to a
// browser, JSON in the shape of clawgate's other denials to API and WebSocket
// clients. It is never cached.
func WriteHeld(w http.ResponseWriter, r *http.Request, h Held) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if h.Code != "" {
		hdr.Set("X-Clawgate-Pairing-Code", h.Code)
	}
	if wantsHTML(r) {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(h.Status)
		_ = heldPage.Execute(w, struct {
			Held
			Title string
		}{h, strconv.Itoa(h.Status) + " " + http.StatusText(h.Status)})
		return
	}
	body, err := json.Marshal(heldBody{Error: heldError{Type: h.Type, Message: h.Message, Code: h.Code, Device: h.Device, Node: h.Node, Gateway: h.Gateway}})
	if err != nil {
		body = []byte(`{"error":{"type":"clawgate_error","message":""}}`)
	}
	hdr.Set("Content-Type", "application/json")
	w.WriteHeader(h.Status)
	_, _ = w.Write(append(body, '\n'))
}

// wantsHTML reports whether the caller is a browser navigating to a page.
func wantsHTML(r *http.Request) bool {
	if r == nil || edge.IsWebSocketUpgrade(r) {
		return false
	}
	for _, a := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(a), "text/html") {
			return true
		}
	}
	return false
}

// heldPage reloads itself every ten seconds, so the Control UI opens by
// itself once the operator has approved the device.
var heldPage = template.Must(template.New("held").Parse(`<!doctype html>
<html><head><meta charset="utf-8">{{if .Code}}<meta http-equiv="refresh" content="10">{{end}}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .Code}}Waiting for approval{{else}}{{.Title}}{{end}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;line-height:1.5}
.code{font:bold 2.4em ui-monospace,monospace;letter-spacing:.1em;padding:.3em .6em;border:2px solid;display:inline-block}
pre{background:#eee;padding:.6em;overflow-x:auto}</style></head>
<body>{{if .Code}}
<h1>This device is waiting for approval</h1>
<p>{{.Message}}</p>
<p>Pairing code</p>
<p class="code">{{.Code}}</p>
<p>On the machine running clawgate, check that the code matches and approve it:</p>
<pre>caddy clawgate devices approve {{.Code}}</pre>
<p><small>Device {{.Node}} ({{.Device}}), gateway {{.Gateway}}. This page reloads by itself.</small></p>
{{else}}
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{end}}<p><small>clawgate: {{.Type}}</small></p>
</body></html>
`))
