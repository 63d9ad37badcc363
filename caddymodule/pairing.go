package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
	"github.com/clawgate/clawgate/tsnet"
)

func init() {
	caddy.RegisterModule(DevicesAdmin{})
}

// PairingConfig is a gateway's device pairing. With Mode "required", each
// tailnet device — a Tailscale node, by its stable node ID and its node key —
// must be approved once before its requests reach the gateway, even when the
// guard's rules allow its user. A new device gets a "pending approval" answer
// with a short pairing code, and an operator approves it with
// `caddy clawgate devices approve <code>` or the admin API. A device whose node
// key changes (a re-registered machine) waits for approval again, and revoking
// a device closes its open WebSockets.
//
// Requests that do not arrive over the tailnet (a bearer token on another
// listener) have no device to approve and are refused on such a gateway.
type PairingConfig struct {
	// Mode is "required" or "off". Default: off.
	Mode string `json:"mode,omitempty"`

	// Storage is the file holding the gateway's devices and approvals. It is
	// written atomically with mode 0600; when it cannot be read or parsed
	// every device is held until it is fixed. Placeholders are expanded.
	// Default: clawgate/pairing-<gateway>.json in Caddy's data directory.
	Storage string `json:"storage,omitempty"`

	// AutoApprove approves devices without an operator when they match one of
	// these: `tag:<tag>` (a node carrying the ACL tag, which only the tailnet
	// policy can give and a user's own device never has) or `cap:<name>` (the
	// tailnet policy grants the node this app capability towards clawgate's
	// node). Such an approval lasts only while the device still matches.
	// Default: none.
	AutoApprove []string `json:"auto_approve,omitempty"`

	// MaxPending bounds the pending devices kept; the one seen longest ago is
	// forgotten first. Default: 256.
	MaxPending int `json:"max_pending,omitempty"`

	rt *pairingRuntime // nil unless required
}

// pairingRuntime is a provisioned gateway pairing.
type pairingRuntime struct {
	gateway     string
	store       *pairing.Store
	autoApprove []string
	logger      *zap.Logger
	lastErrLog  atomic.Int64 // unix nanos of the last "storage unavailable" log
}

// required reports whether the gateway holds unapproved devices.
func (pc *PairingConfig) required() bool {
	return pc != nil && pc.rt != nil
}

// provisionPairing validates each gateway's pairing and opens its storage. A
// storage file that cannot be read is not a config error: the gateway starts
// and holds every device, and the log says why.
func (a *App) provisionPairing() error {
	repl := caddy.NewReplacer()
	names := make([]string, 0, len(a.Gateways))
	for name := range a.Gateways {
		names = append(names, name)
	}
	sort.Strings(names) // so a clash is reported the same way every time
	usedBy := map[string]string{}
	for _, name := range names {
		pc := a.Gateways[name].Pairing
		if pc == nil {
			continue
		}
		field := "clawgate.gateways." + name + ".pairing"
		switch strings.ToLower(pc.Mode) {
		case "", "off":
			continue
		case "required":
		default:
			return fmt.Errorf("%s.mode: %q is not one of required, off", field, pc.Mode)
		}
		for i, rule := range pc.AutoApprove {
			if err := checkAutoApprove(rule); err != nil {
				return fmt.Errorf("%s.auto_approve[%d]: %w", field, i, err)
			}
		}
		if pc.MaxPending < 0 {
			return fmt.Errorf("%s.max_pending: %d is negative", field, pc.MaxPending)
		}
		path := repl.ReplaceKnown(pc.Storage, "")
		if path == "" {
			if !safeFileName(name) {
				return fmt.Errorf("%s.storage: the gateway name %q cannot be part of a file name; set storage", field, name)
			}
			path = filepath.Join(caddy.AppDataDir(), "clawgate", "pairing-"+name+".json")
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("%s.storage: %w", field, err)
		}
		// One file per gateway: an approval for one gateway must not open
		// another.
		if other, ok := usedBy[abs]; ok {
			return fmt.Errorf("%s.storage: %s is already the storage of gateway %q; give each gateway its own file", field, abs, other)
		}
		usedBy[abs] = name
		store, err := pairing.Open(abs, pairing.Options{MaxPending: pc.MaxPending})
		if err != nil {
			return fmt.Errorf("%s.storage: %w", field, err)
		}
		rt := &pairingRuntime{gateway: name, store: store, autoApprove: pc.AutoApprove, logger: a.logger.With(zap.String("gateway", name))}
		pc.rt = rt
		if err := store.Err(); err != nil {
			rt.lastErrLog.Store(time.Now().UnixNano())
			rt.logger.Error("device pairing storage cannot be used: every device of this gateway is held until the file is fixed or removed",
				zap.String("storage", store.Path()), zap.Error(err))
		}
	}
	return nil
}

// checkAutoApprove validates one auto-approval rule.
func checkAutoApprove(rule string) error {
	kind, val, _ := strings.Cut(rule, ":")
	if val == "" || strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || r == ',' || unicode.IsControl(r) }) {
		return fmt.Errorf("%q: want tag:<tag> or cap:<capability>", rule)
	}
	switch kind {
	case "tag", "cap":
		return nil
	}
	return fmt.Errorf("%q: only tag:<tag> and cap:<capability> can approve devices automatically (a user or node name can be taken by any new machine)", rule)
}

// safeFileName reports whether a gateway name can be used in a file name as it
// is.
func safeFileName(name string) bool {
	if name == "" || name[0] == '.' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// autoRule returns the first auto-approval rule the identity matches, or "".
// Tags and capabilities come from the control server's WhoIs answer, never
// from the request.
func (pc *pairingRuntime) autoRule(id *edge.Identity) string {
	for _, rule := range pc.autoApprove {
		kind, val, _ := strings.Cut(rule, ":")
		switch kind {
		case "tag":
			// Another tailnet's tags are its admin's to give.
			if id.OwnTailnet() && slices.Contains(id.Tags, rule) {
				return rule
			}
		case "cap":
			if _, ok := id.Caps[val]; ok {
				return rule
			}
		}
	}
	return ""
}

// checkDevice holds a request from a device that is not yet approved for the
// guard's gateway, refusing it, and reports whether it did, with the error for
// Caddy's error handling (nil when clawgate answered itself). clientIP is the
// address the guard attributed the request to.
func (a *App) checkDevice(w http.ResponseWriter, r *http.Request, h *Handler, id *edge.Identity, clientIP netip.Addr) (bool, error) {
	gc := a.Gateways[h.Gateway]
	if gc == nil || !gc.Pairing.required() {
		return false, nil
	}
	pc := gc.Pairing.rt
	if !id.OnTailnet {
		return true, pc.hold(h.cleaner, w, r, id, clientIP, http.StatusForbidden, "pairing_no_device",
			"this gateway admits approved tailnet devices only; connect over the tailnet", nil)
	}
	who, err := deviceWhoIs(r)
	if err == nil && (who.NodeID != id.NodeID || who.NodeKey == "" || who.NodeID == "") {
		err = errors.New("the tailnet answered for another node or without a node key")
	}
	if err != nil {
		pc.logger.Warn("device pairing: cannot tell which device this is", zap.String("node", id.Node), zap.String("client_ip", clientIP.String()), zap.Error(err))
		return true, pc.hold(h.cleaner, w, r, id, clientIP, http.StatusForbidden, "pairing_unknown_device",
			"the tailnet device making this request cannot be identified", nil)
	}
	seen := pairing.Seen{
		ID: who.NodeID, NodeKey: who.NodeKey, Node: who.Node, FQDN: who.NodeFQDN, OS: who.OS,
		Login: who.Login, Tags: who.Tags, IP: clientIP, AutoApprove: pc.autoRule(id),
	}
	v, err := pc.store.Check(seen)
	if err != nil {
		if last := pc.lastErrLog.Load(); time.Since(time.Unix(0, last)) > 30*time.Second && pc.lastErrLog.CompareAndSwap(last, time.Now().UnixNano()) {
			pc.logger.Error("device pairing storage cannot be used: every device of this gateway is held until the file is fixed or removed",
				zap.String("storage", pc.store.Path()), zap.Error(err))
		}
		return true, pc.hold(h.cleaner, w, r, id, clientIP, http.StatusServiceUnavailable, "pairing_unavailable",
			"device approvals for this gateway cannot be read; the operator must fix clawgate's pairing storage", nil)
	}
	if v.SaveErr != nil {
		pc.logger.Error("device pairing: saving a change failed; it holds until Caddy stops", zap.String("device", v.Device.ID), zap.Error(v.SaveErr))
	}
	pc.logEvent(v)
	if v.WasApproved {
		// The approval no longer holds: its WebSockets must not outlive it.
		if n := closeDeviceConns(pc.gateway, v.Device.ID); n > 0 {
			pc.logger.Warn("closed open WebSockets of a device whose approval lapsed", zap.String("device", v.Device.ID), zap.Int("count", n))
		}
	}
	if v.Approved {
		return false, nil
	}
	d := v.Device
	return true, pc.hold(h.cleaner, w, r, id, clientIP, http.StatusForbidden, "pairing_pending",
		fmt.Sprintf("this device (%s) is waiting for approval; ask the operator to run: caddy clawgate devices approve %s", d.Node, d.Code), &d)
}

// deviceStillApproved checks again, as a new request would, whether the
// device that opened a WebSocket through node from remoteAddr is approved
// for the gateway: a lapsed auto-approval (its tag or capability withdrawn)
// is recorded and logged as on a request, and the answer is false. A
// gateway without pairing approves every device.
func (a *App) deviceStillApproved(ctx context.Context, gateway string, node *poolNode, remoteAddr string, id *edge.Identity) bool {
	gc := a.Gateways[gateway]
	if gc == nil || !gc.Pairing.required() {
		return true
	}
	pc := gc.Pairing.rt
	who, err := node.WhoIs(ctx, remoteAddr)
	if err != nil || who.NodeID != id.NodeID || who.NodeKey == "" {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	v, err := pc.store.Check(pairing.Seen{
		ID: who.NodeID, NodeKey: who.NodeKey, Node: who.Node, FQDN: who.NodeFQDN, OS: who.OS,
		Login: who.Login, Tags: who.Tags, IP: ap.Addr().Unmap(), AutoApprove: pc.autoRule(id),
	})
	if err != nil {
		return false
	}
	pc.logEvent(v)
	return v.Approved
}

// logEvent logs what a check changed.
func (pc *pairingRuntime) logEvent(v pairing.Verdict) {
	d := v.Device
	switch v.Event {
	case pairing.EventPending:
		msg := "new device waiting for approval"
		switch d.Reason {
		case pairing.ReasonNodeKeyChanged:
			msg = "device node key changed: waiting for approval again"
		case pairing.ReasonAutoLapsed:
			msg = "device no longer matches its auto-approval rule: waiting for approval"
		}
		pc.logger.Warn(msg, append(deviceFields(d), zap.String("code", d.Code), zap.String("reason", string(d.Reason)))...)
	case pairing.EventAutoApproved:
		pc.logger.Info("device approved", append(deviceFields(d), zap.String("by", d.ApprovedBy), zap.Bool("auto", true))...)
	}
}

// hold refuses a held request and logs it as a denial; error routes get the
// pairing code as {clawgate.pairing_code}.
func (pc *pairingRuntime) hold(cleaner *edge.HeaderCleaner, w http.ResponseWriter, r *http.Request, id *edge.Identity, clientIP netip.Addr, status int, reason, msg string, d *pairing.Device) error {
	if ce := pc.logger.Check(zapcore.InfoLevel, "device held"); ce != nil {
		fields := []zap.Field{zap.String("reason", reason), zap.Int("status", status), zap.String("login", id.Login),
			zap.String("node", id.Node), zap.String("client_ip", clientIP.String()), zap.String("method", r.Method), zap.String("path", logPath(r))}
		if d != nil {
			fields = append(fields, zap.String("device", d.ID), zap.String("code", d.Code))
		}
		ce.Write(fields...)
	}
	held := pairing.Held{Status: status, Type: "clawgate_" + reason, Message: msg}
	ref := &refusal{status: status, reason: reason, message: msg, gateway: pc.gateway}
	if d != nil {
		held.Code, held.Device, held.Node, held.Gateway = d.Code, d.ID, d.Node, pc.gateway
		ref.pairingCode = d.Code
		w.Header().Set("X-Clawgate-Pairing-Code", d.Code)
	}
	if err := refuse(w, r, cleaner, ref); err != nil {
		return err
	}
	pairing.WriteHeld(w, r, held)
	return nil
}

func deviceFields(d pairing.Device) []zap.Field {
	return []zap.Field{zap.String("device", d.ID), zap.String("node", d.Node), zap.String("login", d.Login),
		zap.Strings("tags", d.Tags), zap.Strings("ips", d.IPs), zap.String("node_key", d.NodeKey)}
}

// deviceWhoIs asks the clawgate node that accepted the request about the
// peer, for what the guard's identity leaves out (the node key).
func deviceWhoIs(r *http.Request) (*tsnet.WhoIs, error) {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if local == nil {
		return nil, errors.New("no local address")
	}
	ap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return nil, fmt.Errorf("local address: %w", err)
	}
	node := nodeByIP(ap.Addr().Unmap())
	if node == nil {
		return nil, fmt.Errorf("no clawgate node has address %s", ap.Addr())
	}
	return node.WhoIs(r.Context(), r.RemoteAddr)
}

// closeDeviceConns closes the gateway's upgraded connections from the device
// with the given stable node ID, the one WhoIs named when each was admitted
// (an address can be shared in time by several devices, a node ID cannot),
// and returns how many it closed.
func closeDeviceConns(gateway, deviceID string) int {
	if deviceID == "" {
		return 0
	}
	var victims []*trackedConn
	gateConns.Lock()
	for c := range gateConns.m[gateway] {
		if c.nodeID == deviceID {
			victims = append(victims, c)
		}
	}
	gateConns.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
	return len(victims)
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

// newDevicesCommand is `caddy clawgate devices`.
func newDevicesCommand() *cobra.Command {
	var address, config, adapter, gateway string
	var asJSON bool
	runE := func(action string) func(*cobra.Command, []string) error {
		return withExitStatus(func(c *cobra.Command, fl caddycmd.Flags) (int, error) {
			addr, err := adminAddress(address, config, adapter)
			if err != nil {
				return 1, fmt.Errorf("finding the admin endpoint: %w", err)
			}
			if err := runDevicesCommand(c.OutOrStdout(), addr, action, fl.Arg(0), gateway, asJSON); err != nil {
				return 1, err
			}
			return 0, nil
		})
	}
	cmd := &cobra.Command{
		Use:   "devices list|approve <id|code>|revoke <id|code>",
		Short: "Lists, approves and revokes the tailnet devices of gateways with pairing required",
		Long: `
Device pairing: on a gateway with 'pairing required', each tailnet device
must be approved once before it reaches the gateway. A new device is answered
"waiting for approval" with a short pairing code; check that the code shown
on the device matches and approve it here. A device whose node key changes
(a re-registered machine) waits again; revoking a device closes its open
WebSockets.

The command talks to the running Caddy's admin endpoint: --address, else the
one in the config caddy run would load (--config, else ./Caddyfile), else
localhost:2019.
`,
	}
	cmd.PersistentFlags().StringVar(&address, "address", "", "the admin endpoint's address")
	cmd.PersistentFlags().StringVar(&config, "config", "", "read the admin endpoint's address from this config")
	cmd.PersistentFlags().StringVar(&adapter, "adapter", "", "the config's adapter")
	cmd.PersistentFlags().StringVar(&gateway, "gateway", "", "only this gateway")
	list := &cobra.Command{
		Use:   "list",
		Short: "Lists the devices of every gateway with pairing, pending first",
		Args:  cobra.NoArgs,
		RunE:  runE("list"),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the admin API's JSON")
	approve := &cobra.Command{
		Use:   "approve <id|code>",
		Short: "Approves a pending device by its pairing code or ID",
		Args:  cobra.ExactArgs(1),
		RunE:  runE("approve"),
	}
	revoke := &cobra.Command{
		Use:   "revoke <id|code>",
		Short: "Revokes a device's approval and closes its open WebSockets",
		Args:  cobra.ExactArgs(1),
		RunE:  runE("revoke"),
	}
	cmd.AddCommand(list, approve, revoke)
	return cmd
}

// runDevicesCommand performs one `caddy clawgate devices` action against the
// admin endpoint at adminAddr and writes the outcome to out.
func runDevicesCommand(out io.Writer, adminAddr, action, ref, gateway string, asJSON bool) error {
	switch action {
	case "list":
		uri := "/clawgate/devices"
		if gateway != "" {
			uri += "?gateway=" + url.QueryEscape(gateway)
		}
		body, err := adminCall(adminAddr, http.MethodGet, uri, nil)
		if err != nil {
			return err
		}
		if asJSON {
			_, err := out.Write(body)
			return err
		}
		var list devicesList
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("reading the admin endpoint's answer: %w", err)
		}
		writeDevicesTable(out, list)
		return nil
	case "approve", "revoke":
		req, err := json.Marshal(deviceRequest{Device: ref, Gateway: gateway, By: localOperator()})
		if err != nil {
			return err
		}
		body, err := adminCall(adminAddr, http.MethodPost, "/clawgate/devices/"+action, req)
		if err != nil {
			return err
		}
		var res deviceResult
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("reading the admin endpoint's answer: %w", err)
		}
		for _, d := range res.Devices {
			switch {
			case action == "revoke":
				fmt.Fprintf(out, "revoked %s (%s, %s) on gateway %s\n", d.Node, d.ID, d.Login, d.Gateway)
			case res.Changed:
				fmt.Fprintf(out, "approved %s (%s, %s) for gateway %s\n", d.Node, d.ID, d.Login, d.Gateway)
			default:
				fmt.Fprintf(out, "%s (%s, %s) was already approved for gateway %s\n", d.Node, d.ID, d.Login, d.Gateway)
			}
		}
		if res.ClosedWebSockets > 0 {
			fmt.Fprintf(out, "closed %d open WebSocket(s)\n", res.ClosedWebSockets)
		}
		return nil
	}
	return fmt.Errorf("unknown action %q: want list, approve or revoke", action)
}

// adminCall makes one admin API request and returns the body of a successful
// answer, or the admin endpoint's error message.
func adminCall(adminAddr, method, uri string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := caddycmd.AdminAPIRequest(adminAddr, method, uri, nil, rd)
	if err != nil {
		// AdminAPIRequest puts the answer's JSON in its error; show the
		// message alone.
		msg := err.Error()
		if i := strings.Index(msg, "{"); i >= 0 {
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(msg[i:]), &e) == nil && e.Error != "" {
				return nil, errors.New(e.Error)
			}
		}
		return nil, fmt.Errorf("admin endpoint %s: %w", adminAddr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin endpoint's answer: %w", err)
	}
	return b, nil
}

func writeDevicesTable(out io.Writer, list devicesList) {
	// Pending first: they are what the operator came for.
	sort.SliceStable(list.Devices, func(i, j int) bool {
		return list.Devices[i].Status == pairing.StatusPending && list.Devices[j].Status != pairing.StatusPending
	})
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tSTATUS\tCODE\tNODE\tLOGIN\tOS\tIPS\tFIRST SEEN\tAPPROVED BY\tID")
	for _, d := range list.Devices {
		status := string(d.Status)
		if d.Reason != "" && d.Reason != pairing.ReasonNew {
			status += " (" + strings.ReplaceAll(string(d.Reason), "_", " ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Gateway, status, dash(d.Code), dash(d.Node), dash(d.Login), dash(d.OS),
			dash(strings.Join(d.IPs, ",")), d.FirstSeen.Local().Format("2006-01-02 15:04"), dash(d.ApprovedBy), d.ID)
	}
	tw.Flush()
	if len(list.Devices) == 0 {
		fmt.Fprintln(out, "no devices yet")
	}
	names := make([]string, 0, len(list.Unavailable))
	for name := range list.Unavailable {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(out, "gateway %s: every device is held: %s\n", name, list.Unavailable[name])
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// localOperator names the person running the command, for the log.
func localOperator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// Interface guards
var (
	_ caddy.AdminRouter = (*DevicesAdmin)(nil)
)
