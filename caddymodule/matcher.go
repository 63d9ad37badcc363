package caddymodule

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/clawgate/clawgate/caddymodule/internal/edge"
)

func init() {
	caddy.RegisterModule(IdentityMatcher{})
}

// IdentityMatcher is `http.matchers.clawgate_identity`: it matches requests
// whose tailnet device identity satisfies every condition, in the rule syntax of
// the guard (`user:`, `tag:`, `node:`, `cap:`, `tailnet`). It routes; it does
// not admit: with one node in front of several gateways, it sends each user to
// their own gateway, whose guard still decides on its own.
//
//	@alice clawgate_identity user:alice@example.com
//	clawgate @alice 127.0.0.1:18789 { ... }
//
// Credentials (tokens, JWTs) are not looked at: a route chosen by a bearer
// would let any holder pick it. A request that did not arrive over the tailnet,
// or whose device cannot be identified, never matches.
type IdentityMatcher struct {
	// Conditions must all hold, e.g. ["user:alice@example.com"] or
	// ["tag:ci", "node:ci-bot"]. Required.
	Conditions []string `json:"conditions,omitempty"`

	policy *edge.Policy
}

// CaddyModule returns the Caddy module information.
func (IdentityMatcher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.clawgate_identity",
		New: func() caddy.Module { return new(IdentityMatcher) },
	}
}

// Provision compiles the conditions.
func (m *IdentityMatcher) Provision(caddy.Context) error {
	p, err := compileIdentityConditions(m.Conditions)
	m.policy = p
	return err
}

func compileIdentityConditions(conds []string) (*edge.Policy, error) {
	p, err := edge.NewDevicePolicy(conds)
	if err != nil {
		return nil, fmt.Errorf("clawgate_identity: %w", err)
	}
	return p, nil
}

// MatchWithError reports whether the request's device identity satisfies the
// conditions; a failed identity lookup is an error (the request is refused).
func (m *IdentityMatcher) MatchWithError(r *http.Request) (bool, error) {
	if m.policy == nil {
		return false, errors.New("clawgate_identity: not provisioned")
	}
	id := &edge.Identity{}
	if _, err := identify(r, id); err != nil {
		return false, caddyhttp.Error(http.StatusForbidden, err)
	}
	if !id.OnTailnet {
		return false, nil
	}
	return m.policy.Decide(id).Allowed, nil
}

// Match is MatchWithError without the error.
func (m *IdentityMatcher) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// Interface guards
var (
	_ caddy.Provisioner                 = (*IdentityMatcher)(nil)
	_ caddyhttp.RequestMatcherWithError = (*IdentityMatcher)(nil)
	_ caddyfile.Unmarshaler             = (*IdentityMatcher)(nil)
)
