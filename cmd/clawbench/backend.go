package main

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// okBody is the backend's answer to every plain request: small, so the
// bytes on the wire are dominated by headers and the proxy is what is
// measured.
var okBody = []byte(`{"ok":true}` + "\n")

// backend stands in for the OpenClaw gateway: a plain net/http server on
// loopback answering /bench with a fixed body, /whoami with the identity
// headers it received (for the preflight checks), and /ws with a WebSocket
// that echoes every message.
type backend struct {
	srv *http.Server
	ln  net.Listener
}

func startBackend() (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/bench", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(okBody))}
		_, _ = w.Write(okBody)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		// The user header and the scopes header, as the gateway would read them.
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(r.Header.Get("X-Forwarded-User") + "\n" + r.Header.Get("X-Openclaw-Scopes") + "\n" + r.Header.Get("Authorization")))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	b := &backend{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:  ln,
	}
	go func() {
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic("clawbench: backend: " + err.Error())
		}
	}()
	return b, nil
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) close() error { return b.srv.Close() }
