package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/pairing"
	"github.com/clawgate/clawgate/tsnet"
)

// PairingConfig is a gateway's device pairing. With Mode "required", each
// tailnet device — a Tailscale node, by its stable node ID and its node key —
// must be approved once before its requests reach the gateway, even when the
// guard's rules allow its user. A new device gets a "pending approval" answer
// with a short pairing code, and an operator approves it with
// `caddy clawgate devices approve <code>` or the admin API. A device whose node
// key changes (a re-registered machine) waits for approval again, and revoking
// a device closes its open WebSockets.
//
// Approvals and pending codes live in Caddy's storage (the `storage` global
// option; the file system by default), one key per device under
// clawgate/pairing/<gateway>/devices/, so every Caddy instance sharing the
// storage and the gateway name shares them: a code shown by one instance can
// be approved through another's admin API. Each instance reads the storage
// again every PollInterval when its generation key changed, and closes the
// WebSockets of devices whose approval was withdrawn elsewhere. Anyone who
// can write the storage can approve a device.
//
// Requests that do not arrive over the tailnet (a bearer token on another
// listener) have no device to approve and are refused on such a gateway.
type PairingConfig struct {
	// Mode is "required" or "off". Default: off.
	Mode string `json:"mode,omitempty"`

	// Storage is the approval file of older clawgate versions, read once to
	// move its devices into Caddy's storage and then renamed with a
	// ".migrated" suffix and a note beside it. Deprecated: approvals live in
	// Caddy's storage; once migrated, remove it. Placeholders are expanded.
	// Default: clawgate/pairing-<gateway>.json in Caddy's data directory, if
	// it exists.
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

	// PollInterval is how often the instance looks for approvals and
	// revocations other instances wrote to the storage (one small key read
	// when nothing changed), from 1s to 30s. While the storage cannot be
	// read, devices approved before keep passing for
	// max(30s, 3 × PollInterval) and are then held. Default: 2s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`

	rt *pairingRuntime // nil unless required
}

// pairingRuntime is a provisioned gateway pairing.
type pairingRuntime struct {
	gateway     string
	store       *pairing.Store
	storageName string // the storage, for the log
	legacyFile  string // the approval file to migrate from
	poll        time.Duration
	autoApprove []string
	logger      *zap.Logger
	lastErrLog  atomic.Int64 // unix nanos of the last "storage unavailable" log
	stopPoll    context.CancelFunc
	polling     sync.WaitGroup
}

// required reports whether the gateway holds unapproved devices.
func (pc *PairingConfig) required() bool {
	return pc != nil && pc.rt != nil
}

// provisionPairing validates each gateway's pairing and opens its devices in
// st, Caddy's storage. A storage that cannot be read is not a config error:
// the gateway starts and holds every device, and the log says why.
func (a *App) provisionPairing(st pairing.Storage) error {
	repl := caddy.NewReplacer()
	names := slices.Sorted(maps.Keys(a.Gateways)) // so a clash is reported the same way every time
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
		poll := time.Duration(pc.PollInterval)
		if poll == 0 {
			poll = defaultPairingPoll
		}
		if err := checkPollInterval(poll); err != nil {
			return fmt.Errorf("%s.poll_interval: %w", field, err)
		}
		logger := a.logger.With(zap.String("gateway", name))
		legacy := repl.ReplaceKnown(pc.Storage, "")
		if legacy != "" {
			logger.Warn("pairing storage is deprecated: device approvals live in Caddy's storage (the storage global option); the file is only read to move its devices there, remove the line once it is renamed "+pairing.MigratedSuffix,
				zap.String("setting", field+".storage"), zap.String("file", legacy))
		} else if safeFileName(name) {
			legacy = filepath.Join(caddy.AppDataDir(), "clawgate", "pairing-"+name+".json")
		}
		if legacy != "" {
			abs, err := filepath.Abs(legacy)
			if err != nil {
				return fmt.Errorf("%s.storage: %w", field, err)
			}
			// One file per gateway: an approval for one gateway must not
			// open another.
			if other, ok := usedBy[abs]; ok {
				return fmt.Errorf("%s.storage: %s is already the approval file of gateway %q; each gateway had its own", field, abs, other)
			}
			usedBy[abs] = name
			legacy = abs
		}
		stale := max(pairing.DefaultStaleFor, 3*poll)
		store := pairing.Open(st, name, pairing.Options{MaxPending: pc.MaxPending, StaleFor: stale})
		rt := &pairingRuntime{gateway: name, store: store, storageName: storageName(st), legacyFile: legacy, poll: poll,
			autoApprove: pc.AutoApprove, logger: logger}
		pc.rt = rt
		if err := store.Err(); err != nil {
			rt.lastErrLog.Store(time.Now().UnixNano())
			rt.logger.Error("device pairing storage cannot be read: every device of this gateway is held until it reads again",
				rt.storageFields(zap.Error(err))...)
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
			pc.logger.Error("device pairing storage cannot be used: the device is held until it can be read and written",
				pc.storageFields(zap.String("device", seen.ID), zap.Error(err))...)
		}
		return true, pc.hold(h.cleaner, w, r, id, clientIP, http.StatusServiceUnavailable, "pairing_unavailable",
			"device approvals for this gateway cannot be read; the operator must fix clawgate's pairing storage", nil)
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
