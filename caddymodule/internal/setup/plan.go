package setup

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
	"github.com/clawgate/clawgate/caddymodule/internal/release"
)

// Options adjusts the plan.
type Options struct {
	// DeviceAutoApprove turns on gateway.auth.trustedProxy.deviceAutoApprove
	// with the non-admin scopes clawgate's rules grant for a gateway with
	// `pairing required` even when no Control UI origin is known (with one,
	// setup proposes it anyway). Without edge pairing nothing is written.
	DeviceAutoApprove bool
	// Version is what is known of the gateway's OpenClaw version apart from
	// its config (whose meta.lastTouchedVersion Prepare adds): the plan
	// writes only keys that version's schema accepts.
	Version release.Evidence
}

type opKind int

const (
	opSet    opKind = iota + 1 // set the value at path
	opDelete                   // remove the member at path
	opMove                     // rename the member at path to newKey, keeping its value text
)

// op is one change to the merged config, at a path of keys.
type op struct {
	kind   opKind
	path   []string
	value  any    // opSet: string, bool, float64, []string, or obj
	newKey string // opMove
	reason string
	old    any  // the merged value before, for display
	had    bool // whether the path was present before
}

// obj is an object to write, keys in the order given.
type obj []kv

type kv struct {
	k string
	v any
}

var (
	pBind         = []string{"gateway", "bind"}
	pCustomHost   = []string{"gateway", "customBindHost"}
	pPort         = []string{"gateway", "port"}
	pProxies      = []string{"gateway", "trustedProxies"}
	pRealIP       = []string{"gateway", "allowRealIpFallback"}
	pTailscale    = []string{"gateway", "tailscale", "mode"}
	pMode         = []string{"gateway", "auth", "mode"}
	pToken        = []string{"gateway", "auth", "token"}
	pPassword     = []string{"gateway", "auth", "password"}
	pTP           = []string{"gateway", "auth", "trustedProxy"}
	pUserHeader   = []string{"gateway", "auth", "trustedProxy", "userHeader"}
	pRequired     = []string{"gateway", "auth", "trustedProxy", "requiredHeaders"}
	pLoopback     = []string{"gateway", "auth", "trustedProxy", "allowLoopback"}
	pAllowUsers   = []string{"gateway", "auth", "trustedProxy", "allowUsers"}
	pAutoApprove  = []string{"gateway", "auth", "trustedProxy", "deviceAutoApprove"}
	pIDScopes     = []string{"gateway", "auth", "identityScopes"}
	pOrigins      = []string{"gateway", "controlUi", "allowedOrigins"}
	pPublicOrigin = []string{"gateway", "publicOrigin"}
	pRoles        = []string{"gateway", "roles"}
	loopbackHosts = []string{"127.0.0.1", "::1"}
)

const (
	envToken    = "OPENCLAW_GATEWAY_TOKEN"
	envPassword = "OPENCLAW_GATEWAY_PASSWORD"
)

// planOps works out the changes that make the merged config tree agree with
// the edge. Each op carries the reason shown to the user.
func planOps(tree map[string]any, e Edge, o Options, line release.Line) []op {
	var ops []op
	add := func(kind opKind, path []string, value any, reason string) {
		old, had := lookup(tree, path)
		ops = append(ops, op{kind: kind, path: path, value: value, reason: reason, old: old, had: had})
	}

	switch bind, ok := str(tree, pBind); {
	case !ok:
		add(opSet, pBind, "loopback", "unset, OpenClaw binds every interface inside containers; the gateway must be reachable only through clawgate")
	case bind != "loopback":
		add(opSet, pBind, "loopback", fmt.Sprintf("%q lets clients reach the gateway without passing through clawgate", bind))
	}
	if _, ok := lookup(tree, pCustomHost); ok {
		add(opDelete, pCustomHost, nil, `only used with bind "custom"`)
	}
	if e.Port > 0 {
		port := edge.DefaultGatewayPort
		if p, ok := lookup(tree, pPort); ok {
			if f, ok := p.(float64); ok && f > 0 && f == math.Trunc(f) {
				port = int(f)
			} else {
				port = -1
			}
		}
		if port != e.Port {
			add(opSet, pPort, float64(e.Port), fmt.Sprintf("clawgate proxies to 127.0.0.1:%d", e.Port))
		}
	}
	if !sameSet(stringList(tree, pProxies), loopbackHosts, false) {
		add(opSet, pProxies, slices.Clone(loopbackHosts), "clawgate reaches the gateway from loopback and is the only proxy it should believe; anything wider lets others assert identities")
	}
	if v, _ := lookup(tree, pRealIP); v == true {
		add(opSet, pRealIP, false, "clawgate always sends X-Forwarded-For; the fallback only helps clients that bypass it")
	}
	if m, _ := str(tree, pTailscale); m == "serve" || m == "funnel" {
		add(opSet, pTailscale, "off", fmt.Sprintf("OpenClaw's own Tailscale %s publishes the gateway around clawgate; clawgate is the tailnet front door", m))
	}

	if m, _ := str(tree, pMode); m != "trusted-proxy" {
		add(opSet, pMode, "trusted-proxy", "clawgate authenticates every caller and sends the identity in "+e.UserHeader)
	}
	_, hasPassword := lookup(tree, pPassword)
	if _, ok := lookup(tree, pToken); ok {
		if hasPassword {
			add(opDelete, pToken, nil, "a shared token stops a trusted-proxy gateway from starting; the existing password stays for local CLI use")
		} else {
			ops = append(ops, op{kind: opMove, path: pToken, newKey: "password", had: true, old: secretShape(lookupAny(tree, pToken)),
				reason: "a shared token stops a trusted-proxy gateway from starting; as the password it keeps working for the local CLI (openclaw ... --password)"})
			hasPassword = true
		}
	}
	for _, envPath := range [][]string{{"env", "vars", envToken}, {"env", envToken}} {
		if _, ok := lookup(tree, envPath); !ok {
			continue
		}
		pwPath := append(slices.Clone(envPath[:len(envPath)-1]), envPassword)
		if _, has := lookup(tree, pwPath); has || hasPassword {
			add(opDelete, envPath, nil, envToken+" is a shared token, which stops a trusted-proxy gateway from starting; a password is already set for local CLI use")
		} else {
			ops = append(ops, op{kind: opMove, path: envPath, newKey: envPassword, had: true, old: secretShape(lookupAny(tree, envPath)),
				reason: envToken + " is a shared token, which stops a trusted-proxy gateway from starting; as " + envPassword + " it keeps working for the local CLI"})
			hasPassword = true
		}
	}

	if _, ok := lookup(tree, pTP); ok {
		if _, isObj := lookupAny(tree, pTP).(map[string]any); !isObj {
			add(opDelete, pTP, nil, "not an object")
		}
	}
	if h, _ := str(tree, pUserHeader); !strings.EqualFold(strings.TrimSpace(h), e.UserHeader) {
		add(opSet, pUserHeader, e.UserHeader, "clawgate sends the user in "+e.UserHeader)
	}
	if !sameSet(stringList(tree, pRequired), e.RequiredHeaders, true) {
		add(opSet, pRequired, slices.Clone(e.RequiredHeaders), "clawgate sets them on every request it forwards; a request without them did not come through clawgate")
	}
	if v, _ := lookup(tree, pLoopback); v != true {
		add(opSet, pLoopback, true, "clawgate connects from 127.0.0.1; without this every trusted-proxy request is refused")
	}
	switch have, present := lookup(tree, pAllowUsers); {
	case len(e.Users) > 0 && !sameSet(stringList(tree, pAllowUsers), e.Users, false):
		add(opSet, pAllowUsers, slices.Clone(e.Users), "the identities clawgate's rules admit by name (OpenClaw compares them exactly)")
	case len(e.Users) == 0 && present && have != nil:
		add(opDelete, pAllowUsers, nil, "clawgate's rules name no user, so any list here drifts from the edge")
	}

	unknownKey := fmt.Sprintf("OpenClaw %s does not know this key and refuses to start with it", line.Version)
	if line.DeviceAutoApprove {
		planAutoApprove(tree, e, o, add)
	} else if _, ok := lookup(tree, pAutoApprove); ok {
		add(opDelete, pAutoApprove, nil, unknownKey)
	}
	if line.IdentityScopes {
		planIdentityScopes(tree, e, add)
	} else if _, ok := lookup(tree, pIDScopes); ok {
		add(opDelete, pIDScopes, nil, unknownKey)
	}
	if _, ok := lookup(tree, pPublicOrigin); ok && !line.PublicOrigin {
		add(opDelete, pPublicOrigin, nil, unknownKey)
	}
	if _, ok := lookup(tree, pRoles); ok && !line.Roles {
		add(opDelete, pRoles, nil, unknownKey)
	}

	origins := stringList(tree, pOrigins)
	switch {
	case len(e.Origins) > 0 && !sameSet(lowerAll(origins), e.Origins, false):
		add(opSet, pOrigins, slices.Clone(e.Origins), "the Control UI is served through clawgate on these origins, and on no other")
	case len(e.Origins) == 0 && slices.Contains(origins, "*"):
		rest := slices.DeleteFunc(slices.Clone(origins), func(s string) bool { return s == "*" })
		if len(rest) == 0 {
			add(opDelete, pOrigins, nil, `"*" lets any web page drive the Control UI through clawgate`)
		} else {
			add(opSet, pOrigins, rest, `"*" lets any web page drive the Control UI through clawgate`)
		}
	}
	return ops
}

// wantsAutoApprove reports whether setup turns deviceAutoApprove on for the
// edge: only where clawgate pairs each device (`pairing required`), so that
// OpenClaw pairs the browsers clawgate approved instead of asking a second
// time, and only where a browser comes (the Control UI's origins are known)
// or the user asked for it.
func wantsAutoApprove(e Edge, o Options) bool {
	return e.EdgePairing && (len(e.Origins) > 0 || o.DeviceAutoApprove)
}

func planAutoApprove(tree map[string]any, e Edge, o Options, add func(opKind, []string, any, string)) {
	enabledPath := append(slices.Clone(pAutoApprove), "enabled")
	enabled, _ := lookup(tree, enabledPath)
	scopesPath := append(slices.Clone(pAutoApprove), "scopes")
	have, hasScopes := lookup(tree, scopesPath)
	switch {
	case !e.EdgePairing && enabled == true:
		add(opSet, enabledPath, false, "clawgate has no `pairing required` for this gateway, so auto-approval would rest on the tailnet login alone; OpenClaw's manual approval stays the second factor")
		return
	case wantsAutoApprove(e, o):
		if len(e.AutoApproveScopes) == 0 {
			return
		}
		if enabled != true {
			add(opSet, enabledPath, true, "clawgate's device pairing approves each machine; OpenClaw pairs the browser it lets in, so a device is approved once")
		}
		if !hasScopes || !sameSet(stringList(tree, scopesPath), e.AutoApproveScopes, false) {
			add(opSet, scopesPath, slices.Clone(e.AutoApproveScopes), "the scopes clawgate's rules grant, operator.admin excepted: an auto-approved device never gets admin")
		}
		return
	}
	// Scopes matter only while auto-approval is on.
	if list, ok := have.([]any); ok && enabled == true && slices.ContainsFunc(list, func(v any) bool { s, _ := v.(string); return strings.TrimSpace(s) == adminScope }) {
		kept := []string{}
		for _, v := range list {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != adminScope {
				kept = append(kept, s)
			}
		}
		add(opSet, scopesPath, kept, "auto-approving admin devices hands full admin to every proxied user (audit critical); grant admin per identity instead")
	}
}

func planIdentityScopes(tree map[string]any, e Edge, add func(opKind, []string, any, string)) {
	current, present := lookupAny(tree, pIDScopes).(map[string]any)
	if _, ok := lookup(tree, pIDScopes); ok && !present {
		add(opDelete, pIDScopes, nil, "not an object")
	}
	users := slices.Sorted(maps.Keys(e.Scopes))
	for _, u := range users {
		want := e.Scopes[u]
		var have []string
		if list, ok := current[u].([]any); ok {
			for _, v := range list {
				if s, ok := v.(string); ok {
					have = append(have, s)
				}
			}
		}
		if _, ok := current[u]; ok && sameSet(have, want, false) {
			continue
		}
		add(opSet, append(slices.Clone(pIDScopes), u), slices.Clone(want), "the scopes clawgate's rules grant "+u+" (clawgate's x-openclaw-scopes still caps each request)")
	}
	keys := slices.Sorted(maps.Keys(current))
	for _, k := range keys {
		if _, ok := e.Scopes[k]; !ok {
			add(opDelete, append(slices.Clone(pIDScopes), k), nil, "no clawgate rule grants "+k+" scopes")
		}
	}
}

// lookup returns the value at path and whether it is present.
func lookup(tree map[string]any, path []string) (any, bool) {
	var cur any = tree
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func lookupAny(tree map[string]any, path []string) any {
	v, _ := lookup(tree, path)
	return v
}

func str(tree map[string]any, path []string) (string, bool) {
	s, ok := lookupAny(tree, path).(string)
	return s, ok
}

// stringList returns the string entries of the array at path.
func stringList(tree map[string]any, path []string) []string {
	list, _ := lookupAny(tree, path).([]any)
	var out []string
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, strings.TrimSpace(s))
		}
	}
	return out
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

// sameSet reports whether a and b hold the same strings, ignoring order and
// duplicates (and case when fold is set).
func sameSet(a, b []string, fold bool) bool {
	norm := func(list []string) []string {
		out := make([]string, 0, len(list))
		for _, s := range list {
			if fold {
				s = strings.ToLower(s)
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

// secretShape describes a secret without revealing it.
func secretShape(v any) string {
	switch t := v.(type) {
	case string:
		return fmt.Sprintf("<secret, %d chars>", len([]rune(t)))
	case map[string]any:
		return "<SecretRef>"
	}
	return "<secret>"
}

// isSecretPath reports whether the value at path is a credential, whose
// value is never shown: a token or password key, or an env entry named like
// a secret.
func isSecretPath(path []string) bool {
	if len(path) == 0 {
		return false
	}
	last := strings.ToLower(path[len(path)-1])
	if path[0] == "env" {
		for _, w := range []string{"token", "password", "secret", "key"} {
			if strings.Contains(last, w) {
				return true
			}
		}
		return false
	}
	switch last {
	case "token", "password", "secret":
		return true
	}
	return false
}

// display renders a value for the diff, compactly, never a secret.
func display(path []string, v any) string {
	if isSecretPath(path) {
		if s, ok := v.(string); ok && strings.HasPrefix(s, "<") {
			return s
		}
		return secretShape(v)
	}
	if o, ok := v.(obj); ok {
		parts := make([]string, len(o))
		for i, e := range o {
			parts[i] = strconv.Quote(e.k) + ":" + display(append(slices.Clone(path), e.k), e.v)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// PathString renders a path as gateway.auth.identityScopes["a@b.c"].
func PathString(path []string) string {
	var b strings.Builder
	for i, k := range path {
		if isIdent(k) {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		} else {
			b.WriteString("[" + strconv.Quote(k) + "]")
		}
	}
	return b.String()
}

func isIdent(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
