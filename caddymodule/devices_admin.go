package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
)

func init() {
	caddy.RegisterModule(DevicesAdmin{})
}

// DevicesAdmin is `admin.api.clawgate_devices`: device pairing on Caddy's admin
// endpoint.
//
//	GET  /clawgate/devices[?gateway=<name>]   every device of every gateway with pairing
//	POST /clawgate/devices/approve            {"device": "<id or code>", "gateway": "", "by": ""}
//	POST /clawgate/devices/revoke             {"device": "<id or code>", "gateway": "", "by": ""}
//
// Approving by ID without a gateway needs the device to be known to one
// gateway only; revoking without a gateway revokes it on every gateway. "by"
// names the operator for the log (the admin endpoint has no login of its own).
type DevicesAdmin struct{}

// CaddyModule returns the Caddy module information.
func (DevicesAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.clawgate_devices",
		New: func() caddy.Module { return new(DevicesAdmin) },
	}
}

// Routes returns the admin routes.
func (DevicesAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/clawgate/devices", Handler: caddy.AdminHandlerFunc(serveDevices)},
		{Pattern: "/clawgate/devices/approve", Handler: caddy.AdminHandlerFunc(serveDeviceAction)},
		{Pattern: "/clawgate/devices/revoke", Handler: caddy.AdminHandlerFunc(serveDeviceAction)},
	}
}

// deviceEntry is a device with its gateway, as the admin API shows it.
type deviceEntry struct {
	Gateway string `json:"gateway"`
	pairing.Device
}

// devicesList is the answer to GET /clawgate/devices.
type devicesList struct {
	Devices []deviceEntry `json:"devices"`
	// Unavailable maps gateways whose storage cannot be used to the reason.
	Unavailable map[string]string `json:"unavailable,omitempty"`
}

// deviceRequest is the body of an approve or revoke request.
type deviceRequest struct {
	Device  string `json:"device"`
	Gateway string `json:"gateway,omitempty"`
	By      string `json:"by,omitempty"`
}

// deviceResult is the answer to an approve or revoke request.
type deviceResult struct {
	Devices []deviceEntry `json:"devices"`
	// Changed is false when approving a device that was already approved.
	Changed bool `json:"changed"`
	// ClosedWebSockets counts the revoked devices' connections closed.
	ClosedWebSockets int `json:"closed_websockets,omitempty"`
}

// pairingGateways returns the running app's gateways with pairing required,
// by name.
func pairingGateways() map[string]*pairingRuntime {
	out := map[string]*pairingRuntime{}
	a := runningApp.Load()
	if a == nil {
		return out
	}
	for name, gc := range a.Gateways {
		if gc.Pairing.required() {
			out[name] = gc.Pairing.rt
		}
	}
	return out
}

func serveDevices(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	gws := pairingGateways()
	want := r.URL.Query().Get("gateway")
	if want != "" && gws[want] == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("gateway %q has no device pairing", want)}
	}
	list := devicesList{Devices: []deviceEntry{}}
	for name, pc := range gws {
		if want != "" && name != want {
			continue
		}
		devices, err := pc.store.List()
		if err != nil {
			if list.Unavailable == nil {
				list.Unavailable = map[string]string{}
			}
			list.Unavailable[name] = err.Error()
			continue
		}
		for _, d := range devices {
			list.Devices = append(list.Devices, deviceEntry{Gateway: name, Device: d})
		}
	}
	sort.SliceStable(list.Devices, func(i, j int) bool { return list.Devices[i].Gateway < list.Devices[j].Gateway })
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

func serveDeviceAction(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	var req deviceRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding request: %w", err)}
	}
	req.Device = strings.TrimSpace(req.Device)
	if req.Device == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`"device" is required: a device ID or pairing code`)}
	}
	by := adminCaller(r, req.By)
	gws := pairingGateways()
	if req.Gateway != "" {
		pc := gws[req.Gateway]
		if pc == nil {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("gateway %q has no device pairing", req.Gateway)}
		}
		gws = map[string]*pairingRuntime{req.Gateway: pc}
	}
	// Find where the device is known, so an ambiguous approval is refused
	// before anything changes.
	var where, unavailable []string
	for name, pc := range gws {
		_, err := pc.store.Find(req.Device)
		switch {
		case err == nil:
			where = append(where, name)
		case errors.Is(err, pairing.ErrUnavailable):
			unavailable = append(unavailable, name)
		}
	}
	sort.Strings(where)
	sort.Strings(unavailable)
	if len(where) == 0 {
		if len(unavailable) > 0 {
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("no device %q found, and the pairing storage of gateway(s) %s cannot be read", req.Device, strings.Join(unavailable, ", "))}
		}
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no device with ID or pairing code %q", req.Device)}
	}
	res := deviceResult{Devices: []deviceEntry{}}
	if strings.HasSuffix(r.URL.Path, "/approve") {
		if len(where) > 1 {
			return caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("device %q is known to gateways %s: name one (--gateway)", req.Device, strings.Join(where, ", "))}
		}
		pc := gws[where[0]]
		d, changed, err := pc.store.Approve(req.Device, by)
		if err != nil {
			return deviceStoreError(err)
		}
		if changed {
			pc.logger.Info("device approved", append(deviceFields(d), zap.String("by", by), zap.String("admin_remote", r.RemoteAddr), zap.Bool("auto", false))...)
		}
		res.Changed = changed
		res.Devices = append(res.Devices, deviceEntry{Gateway: where[0], Device: d})
	} else {
		for _, name := range where {
			pc := gws[name]
			d, err := pc.store.Revoke(req.Device)
			if errors.Is(err, pairing.ErrNotFound) {
				continue // revoked meanwhile
			}
			if err != nil {
				return deviceStoreError(err)
			}
			n := closeDeviceConns(name, d.ID)
			pc.logger.Info("device revoked", append(deviceFields(d), zap.String("by", by), zap.String("admin_remote", r.RemoteAddr),
				zap.String("was", string(d.Status)), zap.Int("closed_websockets", n))...)
			res.Changed = true
			res.ClosedWebSockets += n
			res.Devices = append(res.Devices, deviceEntry{Gateway: name, Device: d})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(res)
}

func deviceStoreError(err error) error {
	switch {
	case errors.Is(err, pairing.ErrNotFound):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err}
	case errors.Is(err, pairing.ErrUnavailable):
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
}

// adminCaller names who made an admin request, for the log and the record:
// the client certificate's subject when the admin endpoint checks them, else
// the name the caller gave (the CLI sends the local user), else "admin API".
func adminCaller(r *http.Request, claimed string) string {
	claimed = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(claimed))
	if len(claimed) > 128 {
		claimed = claimed[:128]
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn := r.TLS.PeerCertificates[0].Subject.String()
		if claimed != "" {
			return claimed + " (client certificate " + cn + ")"
		}
		return "client certificate " + cn
	}
	if claimed == "" {
		return "admin API"
	}
	return claimed
}

// Interface guards
var (
	_ caddy.AdminRouter = (*DevicesAdmin)(nil)
)
