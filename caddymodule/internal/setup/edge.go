package setup

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/clawgate/clawgate/caddymodule/internal/audit"
	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

// operatorScopes are the scopes OpenClaw's config schema accepts in
// gateway.auth.identityScopes (openclaw@2026.9.6, OperatorScopeSchema); any
// other name there stops the gateway from starting.
var operatorScopes = []string{
	"operator.admin", "operator.read", "operator.write", "operator.sessions.read", "operator.sessions.write",
	"operator.approvals", "operator.questions", "operator.pairing", "operator.talk", "operator.talk.secrets",
}

const adminScope = "operator.admin"

// Guard is one clawgate guard in front of a gateway, as configured in Caddy.
type Guard struct {
	// UserHeader is the header the guard sends the user in. Default:
	// edge.DefaultUserHeader.
	UserHeader string
	// Port is the loopback port the guard's upstream names; 0 when unknown.
	Port int
	// Rules are the guard's policy rules, as written.
	Rules []string
	// Tokens are the guard's static tokens (names, users and scope caps only;
	// never their secrets).
	Tokens []Token
}

// Token is a static bearer token of a guard, without its secret.
type Token struct {
	Name   string
	User   string
	Scopes []string
}

// Input is what the Caddy config says about one gateway.
type Input struct {
	// Guards are every guard naming the gateway.
	Guards []Guard
	// Origins are the origins listed in the gateway's block of the clawgate
	// app; when set they are the Control UI origins.
	Origins []string
	// SiteOrigins are the https origins of tailnet sites (bound to
	// clawgate/<node>, with a *.ts.net host) whose guards name the gateway;
	// used when Origins is empty.
	SiteOrigins []string
	// Upstream is the port of the upstream in the gateway's block; 0 when the
	// block names none (the gate then expects edge.DefaultGatewayPort).
	Upstream int
	// Gated reports whether the clawgate app has a block for the gateway (and
	// so audits it).
	Gated bool
	// EdgePairing reports whether the gateway's block has `pairing
	// required`: clawgate holds each new device until it is approved.
	EdgePairing bool
}

// Edge is what clawgate does in front of one gateway: what it sends and whom
// it admits, which the gateway's openclaw.json has to agree with.
type Edge struct {
	// UserHeader is the header carrying the user, lowercase.
	UserHeader string
	// RequiredHeaders are the forwarding headers OpenClaw should require:
	// edge.GatewayRequiredHeaders.
	RequiredHeaders []string
	// Users are the identities clawgate's rules admit by name (logins and
	// token users), lowercase and sorted: gateway.auth.trustedProxy.allowUsers.
	Users []string
	// Scopes are, per user, the operator scopes the allow rules naming that
	// user grant: gateway.auth.identityScopes. Users whose rules grant none
	// are absent.
	Scopes map[string][]string
	// AutoApproveScopes are the scopes device auto-approval may grant when
	// asked for: every scope a rule grants, operator.admin excepted.
	AutoApproveScopes []string
	// Origins are the browser origins of the Control UI through clawgate.
	Origins []string
	// Port is the loopback port clawgate proxies to; 0 skips the check.
	Port int
	// EdgePairing reports whether clawgate pairs each device of the gateway
	// (`pairing required`), which is what lets OpenClaw auto-approve the
	// browsers it lets in.
	EdgePairing bool
	// Notes are things about the edge that the config change cannot fix and
	// the user should know.
	Notes []string
}

// Expect is what clawgate's gate checks a config against for this edge.
func (e Edge) Expect() audit.Expect {
	return audit.Expect{
		UserHeader:  e.UserHeader,
		Users:       e.Users,
		Origins:     e.Origins,
		Port:        e.Port,
		EdgePairing: e.EdgePairing,
	}
}

// Derive works out what the gateway's config has to agree with from the
// guards in front of it. It fails when the guards disagree in a way no single
// gateway config can satisfy (two user headers, two upstream ports), or when a
// rule does not parse.
func Derive(in Input) (Edge, error) {
	e := Edge{RequiredHeaders: edge.GatewayRequiredHeaders(), Scopes: map[string][]string{}, EdgePairing: in.EdgePairing}
	if len(in.Guards) == 0 {
		return e, fmt.Errorf("no clawgate guard names this gateway")
	}
	users := map[string]bool{}
	scopes := map[string]map[string]bool{}
	all := map[string]bool{}
	unknown := map[string]bool{}
	grant := func(user string, sc []string) {
		for _, s := range sc {
			if !slices.Contains(operatorScopes, s) {
				unknown[s] = true
				continue
			}
			all[s] = true
			if scopes[user] == nil {
				scopes[user] = map[string]bool{}
			}
			scopes[user][s] = true
		}
	}
	ports := map[int]bool{}
	for gi, g := range in.Guards {
		h := strings.ToLower(strings.TrimSpace(g.UserHeader))
		if h == "" {
			h = edge.DefaultUserHeader
		}
		if e.UserHeader != "" && e.UserHeader != h {
			return e, fmt.Errorf("guards send the user in different headers (%s and %s); OpenClaw reads one", e.UserHeader, h)
		}
		e.UserHeader = h
		if g.Port > 0 {
			ports[g.Port] = true
		}
		for _, t := range g.Tokens {
			users[tokenUser(t)] = true
		}
		policy, err := edge.NewPolicy(g.Rules)
		if err != nil {
			if re, ok := errors.AsType[*edge.RuleError](err); ok {
				return e, fmt.Errorf("guard %d, rule %d %q: %w", gi+1, re.Index+1, re.Rule, re.Err)
			}
			return e, fmt.Errorf("guard %d: %w", gi+1, err)
		}
		for _, rule := range policy.Grants() {
			for _, u := range rule.Users {
				if strings.HasPrefix(u, "@") {
					e.Notes = append(e.Notes, fmt.Sprintf("rule %q admits a whole domain (%s): OpenClaw's allowUsers cannot say that, so those users are refused by the gateway unless also named", rule.Rule, u))
					continue
				}
				users[u] = true
				grant(u, rule.Scopes)
			}
			if len(rule.Users) == 0 {
				for _, t := range g.Tokens {
					if !rule.AdmitsToken(t.Name) {
						continue
					}
					sc := rule.Scopes
					if len(t.Scopes) > 0 {
						sc = intersect(sc, t.Scopes)
					}
					grant(tokenUser(t), sc)
				}
			}
			if len(rule.Users) == 0 && len(rule.Tokens) == 0 && rule.Other != "" {
				e.Notes = append(e.Notes, fmt.Sprintf("rule %q admits callers by %s, not by name: OpenClaw's allowUsers lists only named users and tokens, so the gateway refuses those callers unless their identity is also named in a rule", rule.Rule, rule.Other))
			}
		}
	}
	for u := range users {
		e.Users = append(e.Users, u)
	}
	sort.Strings(e.Users)
	for u, set := range scopes {
		e.Scopes[u] = sortedKeys(set)
	}
	for s := range all {
		if s != adminScope {
			e.AutoApproveScopes = append(e.AutoApproveScopes, s)
		}
	}
	sort.Strings(e.AutoApproveScopes)
	for _, s := range sortedKeys(unknown) {
		e.Notes = append(e.Notes, fmt.Sprintf("scope %q is granted by a rule but is not an OpenClaw operator scope; it is left out of identityScopes (OpenClaw refuses unknown scopes there)", s))
	}

	e.Origins = normalizeOrigins(in.Origins)
	if len(e.Origins) == 0 {
		e.Origins = normalizeOrigins(in.SiteOrigins)
	}
	if len(e.Origins) == 0 {
		e.Notes = append(e.Notes, "no Control UI origin is known (no `origins` in the clawgate gateway block and no *.ts.net site bound to clawgate/<node>): gateway.controlUi.allowedOrigins is left alone")
	}

	guardPorts := sortedKeys(ports)
	switch {
	case in.Upstream > 0:
		e.Port = in.Upstream
		for _, p := range guardPorts {
			if p != in.Upstream {
				e.Notes = append(e.Notes, fmt.Sprintf("a guard proxies to port %d but the clawgate gateway block says upstream port %d: the gateway cannot listen on both", p, in.Upstream))
			}
		}
	case len(guardPorts) > 1:
		return e, fmt.Errorf("guards proxy to different ports (%v); one gateway listens on one", guardPorts)
	case len(guardPorts) == 1:
		e.Port = guardPorts[0]
		if in.Gated && e.Port != edge.DefaultGatewayPort {
			e.Notes = append(e.Notes, fmt.Sprintf("the clawgate gateway block names no upstream, so its gate expects port %d while the guards proxy to %d: add `upstream 127.0.0.1:%d` to the block", edge.DefaultGatewayPort, e.Port, e.Port))
		}
	case in.Gated:
		e.Port = edge.DefaultGatewayPort
	}
	return e, nil
}

// tokenUser is the identity clawgate forwards for a token caller without a
// tailnet login, as edge.Identity.User has it.
func tokenUser(t Token) string {
	if t.User != "" {
		return strings.ToLower(strings.TrimSpace(t.User))
	}
	return "token:" + strings.ToLower(t.Name)
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// normalizeOrigins lowercases, drops trailing slashes and duplicates, and
// sorts, as OpenClaw compares origins.
func normalizeOrigins(in []string) []string {
	set := map[string]bool{}
	for _, o := range in {
		o = strings.TrimRight(strings.ToLower(strings.TrimSpace(o)), "/")
		if o != "" {
			set[o] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	return sortedKeys(set)
}

// sortedKeys returns a set's members in order, never nil: an empty set
// encodes as [].
func sortedKeys[K cmp.Ordered](m map[K]bool) []K {
	out := slices.AppendSeq(make([]K, 0, len(m)), maps.Keys(m))
	slices.Sort(out)
	return out
}
