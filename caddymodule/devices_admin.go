package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/user"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
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
// gateway only; revoking without a gateway revokes it on every gateway.
//
// The record names the approver as the admin endpoint knows them: on a unix
// socket, the operating system user the kernel reports for the connection
// (SO_PEERCRED); on a TLS endpoint with client certificates, the certificate;
// on plain TCP, "unverified". "by" is what the caller claims, logged as
// claimed_by and never recorded.
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
	// On a unix socket the caller is whoever the kernel says connected, read
	// from the connection itself; the answer then goes out on that
	// connection too.
	if isUnixAdmin(r) {
		conn, err := hijackAdminConn(w)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("reading the caller's peer credentials: %w", err)}
		}
		defer conn.Close()
		by, err := unixPeerApprover(conn)
		if err != nil {
			writeAdminAnswer(conn, nil, caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("reading the caller's peer credentials: %w", err)})
			return nil
		}
		res, err := deviceAction(r, req, by)
		writeAdminAnswer(conn, res, err)
		return nil
	}
	res, err := deviceAction(r, req, tcpApprover(r))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(res)
}

// deviceAction approves or revokes req.Device (by the path of r) on behalf of
// by, the approver as the admin endpoint established it.
func deviceAction(r *http.Request, req deviceRequest, by string) (deviceResult, error) {
	gws := pairingGateways()
	if req.Gateway != "" {
		pc := gws[req.Gateway]
		if pc == nil {
			return deviceResult{}, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("gateway %q has no device pairing", req.Gateway)}
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
			return deviceResult{}, caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("no device %q found, and the pairing storage of gateway(s) %s cannot be read", req.Device, strings.Join(unavailable, ", "))}
		}
		return deviceResult{}, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no device with ID or pairing code %q", req.Device)}
	}
	// What the request claims about its sender is logged as a claim only:
	// the record holds what the admin endpoint established.
	callerFields := []zap.Field{zap.String("by", by), zap.String("admin_remote", r.RemoteAddr)}
	if claimed := cleanClaim(req.By); claimed != "" {
		callerFields = append(callerFields, zap.String("claimed_by", claimed))
	}
	res := deviceResult{Devices: []deviceEntry{}}
	if strings.HasSuffix(r.URL.Path, "/approve") {
		if len(where) > 1 {
			return deviceResult{}, caddy.APIError{HTTPStatus: http.StatusConflict, Err: fmt.Errorf("device %q is known to gateways %s: name one (--gateway)", req.Device, strings.Join(where, ", "))}
		}
		pc := gws[where[0]]
		d, changed, err := pc.store.Approve(req.Device, by)
		if err != nil {
			return deviceResult{}, deviceStoreError(err)
		}
		if changed {
			pc.logger.Info("device approved", append(append(deviceFields(d), callerFields...), zap.Bool("auto", false))...)
		}
		res.Changed = changed
		res.Devices = append(res.Devices, deviceEntry{Gateway: where[0], Device: d})
		return res, nil
	}
	for _, name := range where {
		pc := gws[name]
		d, err := pc.store.Revoke(req.Device)
		if errors.Is(err, pairing.ErrNotFound) {
			continue // revoked meanwhile
		}
		if err != nil {
			return deviceResult{}, deviceStoreError(err)
		}
		n := closeDeviceConns(name, d.ID)
		pc.logger.Info("device revoked", append(append(deviceFields(d), callerFields...),
			zap.String("was", string(d.Status)), zap.Int("closed_websockets", n))...)
		res.Changed = true
		res.ClosedWebSockets += n
		res.Devices = append(res.Devices, deviceEntry{Gateway: name, Device: d})
	}
	return res, nil
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

// isUnixAdmin reports whether r came in on a unix socket admin endpoint.
func isUnixAdmin(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ok && strings.HasPrefix(addr.Network(), "unix")
}

// hijackAdminConn takes over the admin request's connection, the only place
// its peer credentials can be read from.
func hijackAdminConn(w http.ResponseWriter) (*net.UnixConn, error) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("the admin connection is a %T, not a unix socket", conn)
	}
	return uc, nil
}

// unixPeerApprover names the operating system user at the other end of a
// unix admin socket: the user name and ID, or the ID alone when it has no
// name here. Where this system cannot read peer credentials, the record says
// the approver is unverified; where it can and fails, so does the request.
func unixPeerApprover(c *net.UnixConn) (string, error) {
	uid, err := peerUID(c)
	if err != nil {
		if runtime.GOOS != "linux" {
			return "unverified (" + err.Error() + ")", nil
		}
		return "", err
	}
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		return u.Username + " (uid " + id + ")", nil
	}
	return "uid " + id, nil
}

// tcpApprover is the record of who acted through a network admin endpoint:
// the client certificate's subject where the endpoint checks them, else a
// statement that nobody vouches for the caller (any local user can reach a
// loopback TCP port).
func tcpApprover(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return "client certificate " + cleanClaim(r.TLS.PeerCertificates[0].Subject.String())
	}
	return unverifiedTCPApprover
}

// unverifiedTCPApprover is the approver recorded for a plain TCP admin
// endpoint, which any local user can reach.
const unverifiedTCPApprover = "unverified (admin endpoint on TCP; use a unix socket to record the operator)"

// cleanClaim makes a name the caller chose safe to log: no control
// characters, at most 128 bytes.
func cleanClaim(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// writeAdminAnswer writes the answer to an admin request whose connection was
// taken over: res as JSON, or err as Caddy's admin endpoint writes errors.
func writeAdminAnswer(conn net.Conn, res any, err error) {
	status, body := http.StatusOK, any(res)
	if err != nil {
		apiErr, ok := err.(caddy.APIError)
		if !ok {
			apiErr = caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		if apiErr.Message == "" && apiErr.Err != nil {
			apiErr.Message = apiErr.Err.Error()
		}
		caddy.Log().Named("admin.api").Error("request error", zap.Error(err), zap.Int("status_code", apiErr.HTTPStatus))
		status, body = apiErr.HTTPStatus, apiErr
	}
	b, merr := json.Marshal(body)
	if merr != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	b = append(b, '\n')
	resp := &http.Response{
		StatusCode:    status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(b)),
		Body:          io.NopCloser(bytes.NewReader(b)),
		Close:         true,
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_ = resp.Write(conn)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*DevicesAdmin)(nil)
)
