package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/clawgate/clawgate/tsnet"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is `admin.api.clawgate`: GET /clawgate/gateways on Caddy's admin
// endpoint shows each gateway's latest audit verdict (blocked, reasons,
// findings by severity, when it was checked), and GET /clawgate/nodes each
// tailnet node's state (logged in or its login URL, its name, its tailnet,
// whether the tailnet offers it HTTPS certificates).
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.clawgate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/clawgate/gateways", Handler: caddy.AdminHandlerFunc(serveGateways)},
		{Pattern: "/clawgate/nodes", Handler: caddy.AdminHandlerFunc(serveNodes)},
	}
}

// runningApp is the clawgate app of the running config, for the admin API.
var runningApp atomic.Pointer[App]

func serveGateways(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	snapshot := map[string]*gateState{}
	if a := runningApp.Load(); a != nil {
		snapshot = a.gateSnapshot()
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(snapshot)
}

// nodeStatus is one node as GET /clawgate/nodes shows it.
type nodeStatus struct {
	Started bool `json:"started"`
	tsnet.Status
}

func serveNodes(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	out := map[string]nodeStatus{}
	if a := runningApp.Load(); a != nil {
		for name := range a.Nodes {
			// A configured node no site binds is never started.
			out[name] = nodeStatus{Status: tsnet.Status{State: "NoState"}}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	liveNodes.Range(func(_, v any) bool {
		p := v.(*poolNode)
		out[p.name] = nodeStatus{Started: true, Status: p.Node.Status(ctx)}
		return true
	})
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
