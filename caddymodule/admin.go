package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is `admin.api.clawgate`: GET /clawgate/gateways on Caddy's admin
// endpoint shows each gateway's latest audit verdict (blocked, reasons,
// findings by severity, when it was checked). On a front door it lists the
// gateways behind it on other hosts too, each with a "remote" member (host,
// node, reachable, error, fetched).
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
	return []caddy.AdminRoute{{Pattern: "/clawgate/gateways", Handler: caddy.AdminHandlerFunc(serveGateways)}}
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
			snapshot[name] = st
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(snapshot)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
