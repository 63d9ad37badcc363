package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

// PairingConfig holds a gateway's device pairing: each tailnet device must be
// approved once before it reaches the gateway.
type PairingConfig struct {
	// Mode is "required" or "off". Default: off.
	Mode string `json:"mode,omitempty"`
}

// provisionPairing prepares device pairing for the app's gateways.
func (a *App) provisionPairing() error {
	for name, gc := range a.Gateways {
		if gc.Pairing != nil && gc.Pairing.Mode != "" && gc.Pairing.Mode != "off" {
			return errors.New("clawgate.gateways." + name + ".pairing: device pairing is not available in this build")
		}
	}
	return nil
}

// checkDevice holds a request from a device that is not yet approved for the
// guard's gateway, answering it itself, and reports whether it did.
func (a *App) checkDevice(w http.ResponseWriter, r *http.Request, h *Handler, id *edge.Identity) bool {
	return false
}

// unmarshalPairing parses `pairing required|off`.
func unmarshalPairing(d *caddyfile.Dispenser) (*PairingConfig, error) {
	pc := new(PairingConfig)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	pc.Mode = d.Val()
	return pc, nil
}
