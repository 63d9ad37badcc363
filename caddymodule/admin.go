package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/tsnet"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is `admin.api.clawgate`: GET /clawgate/gateways on Caddy's admin
// endpoint shows each gateway's latest audit verdict (blocked, reasons,
// findings by severity, when it was checked) and where this instance reads
// the gateway's files (paths), so `caddy clawgate setup` and `audit`, run
// from a shell whose environment differs from the service's, read the files
// the running gate audits. On a front door it lists the gateways behind it
// on other hosts too, each with a "remote" member (host, node, reachable,
// error, fetched).
//
// GET /clawgate/nodes shows each tailnet node's state (logged in or its
// login URL, its name, its tailnet, whether the tailnet offers it HTTPS
// certificates).
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
	// Gateways on other hosts, behind this front door, first: a local
	// gateway of the same name is the one this instance guards.
	snapshot := remoteSnapshot()
	if a := runningApp.Load(); a != nil {
		for name, st := range a.gateSnapshot() {
			snapshot[name] = gatewayStatus{gateState: st, Paths: a.gates[name].paths()}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(snapshot)
}

// gatewayStatus is one gateway in GET /clawgate/gateways.
type gatewayStatus struct {
	*gateState
	Paths gatewayPaths `json:"paths"`
}

// gatewayPaths is where a running instance reads a gateway's files: each
// setting as its config writes it and as the instance resolved it in its own
// environment.
type gatewayPaths struct {
	Config   resolvedPath `json:"config"`
	StateDir resolvedPath `json:"state_dir"`
}

// resolvedPath is one path setting of a gateway block.
type resolvedPath struct {
	// Setting is the value in the config, placeholders unresolved; empty
	// when the block leaves it to OpenClaw's default.
	Setting string `json:"setting"`
	// Resolved is the absolute path the instance uses.
	Resolved string `json:"resolved,omitempty"`
	// Error says why the instance could not resolve it.
	Error string `json:"error,omitempty"`
}

// paths is where the gate reads the gateway's files: OpenClaw's defaults
// (OPENCLAW_CONFIG_PATH, OPENCLAW_STATE_DIR, ~/.openclaw) are resolved in
// this process's environment, as the gate's audit resolves them.
func (g *gate) paths() gatewayPaths {
	p := gatewayPaths{
		Config:   resolvedPath{Setting: g.cfg.Config},
		StateDir: resolvedPath{Setting: g.cfg.StateDir},
	}
	if stateDir, config, err := audit.Paths(g.loadOpts); err != nil {
		p.Config.Error, p.StateDir.Error = err.Error(), err.Error()
	} else {
		p.Config.Resolved, p.StateDir.Resolved = config, stateDir
	}
	return p
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
