package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

const appID = "clawgate"

func init() {
	caddy.RegisterModule(App{})
}

// App is the `clawgate` app: the tailnet nodes clawgate runs and the OpenClaw
// gateways it fronts.
type App struct {
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appID,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up the app.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
}

// Start starts the app.
func (a *App) Start() error { return nil }

// Stop stops the app.
func (a *App) Stop() error { return nil }

// identify fills id with the tailnet identity of the request's device when the
// request arrived through one of the app's nodes, and reports whether it did.
func (a *App) identify(r *http.Request, id *edge.Identity) (bool, error) {
	return false, nil
}

// gateStatus reports whether the named gateway is blocked by its audit, with the
// reasons to show.
func (a *App) gateStatus(gateway string) (bool, []string) {
	return false, nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
