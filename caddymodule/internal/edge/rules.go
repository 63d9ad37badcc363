package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Action is what a matching rule does.
type Action int

const (
	// Deny refuses the request.
	Deny Action = iota
	// Allow lets the request through with the rule's scope cap.
	Allow
)

// String returns "allow" or "deny".
func (a Action) String() string {
	if a == Allow {
		return "allow"
	}
	return "deny"
}

// condKind is the kind of one rule condition.
type condKind int

const (
	condUser condKind = iota + 1
	condTag
	condNode
	condToken
	condJWT
	condClaim
	condCap
	condTailnet
	condAnyone
)

// cond is one parsed condition; values are ORed.
type cond struct {
	kind   condKind
	values []string // user: lowercased logins or "@domain"; tag: "tag:x"; others verbatim
	path   string   // claim path, or cap name when values filter a field
	field  string   // cap field name inside {field=...}
	any    bool     // token:*
	src    string   // the condition as written, for what a rule admits
}

// Rule is one parsed policy rule:
//
//	allow|deny <cond> [<cond>...] [scopes <s1>,<s2>... | scopes none]
//
// Conditions are ANDed; comma-separated values inside one condition are
// ORed. See ParseRule for the condition syntax.
type Rule struct {
	// Action is Allow or Deny.
	Action Action
	// Source is the rule text as written, for logs and errors.
	Source string
	// Scopes is the scope cap an allow rule grants; empty means none.
	Scopes []string

	conds  []cond
	header string // ScopesHeader(Scopes), rendered once
}

// ParseRule parses one rule. Conditions:
//
//	user:alice@example.com,bob@example.com  the user (see Identity.User) equals one, case-insensitively
//	user:@example.com                       the user has exactly one '@' and this domain
//	tag:ci (or tag:tag:ci)                  the device has that tag
//	node:alice-laptop                       a device of this node's own tailnet with that short name
//	node:ci-bot.tail1234.ts.net             the device with that full MagicDNS name (any tailnet)
//	token:ci | token:*                      authenticated with that / any static token
//	jwt                                     authenticated with any verified JWT
//	claim:role=operator,admin               a JWT claim (dot path) equals a value or is an array containing it;
//	                                        on the scope claim, a space-separated list containing it
//	cap:example.com/cap/openclaw            the device has that Tailscale app capability
//	cap:example.com/cap/x{role=operator}    ...with a grant object whose field equals a value (or an array containing it)
//	tailnet (or tailnet:own)                a device of this node's own tailnet
//	tailnet:shared                          a device of a tailnet this node was shared into
//	tailnet:own,shared                      either
//	anyone                                  everybody; must be explicit
//
// A device of another tailnet (the node shared into it) matches only
// tailnet:shared, user:, cap: (grants come from this node's own policy) and
// node: with its full name: its short name and tags are that tailnet's
// admin's to choose, so node:<short> and tag: never match it. A device whose
// tailnet cannot be told counts as one of another tailnet.
//
// "scopes a,b" sets the cap forwarded in x-openclaw-scopes; omitted or
// "scopes none" forwards none. Scope names must match [a-z0-9._-]+.
func ParseRule(s string) (Rule, error) {
	fields := strings.Fields(s)
	r := Rule{Source: strings.Join(fields, " "), Scopes: []string{}}
	if len(fields) == 0 {
		return Rule{}, errors.New("empty rule")
	}
	switch fields[0] {
	case "allow":
		r.Action = Allow
	case "deny":
		r.Action = Deny
	default:
		return Rule{}, fmt.Errorf("rule must start with allow or deny, not %q", truncate(fields[0], 32))
	}
	rest := fields[1:]
	for i := 0; i < len(rest); i++ {
		f := rest[i]
		if f == "scopes" {
			if r.Action == Deny {
				return Rule{}, errors.New("deny rule cannot grant scopes")
			}
			if i+1 >= len(rest) {
				return Rule{}, errors.New("scopes needs a list or none")
			}
			if i+2 < len(rest) {
				return Rule{}, fmt.Errorf("unexpected %q after scopes", truncate(rest[i+2], 32))
			}
			sc, err := parseScopes(rest[i+1])
			if err != nil {
				return Rule{}, err
			}
			r.Scopes = sc
			break
		}
		c, err := parseCond(f)
		if err != nil {
			return Rule{}, err
		}
		c.src = f
		r.conds = append(r.conds, c)
	}
	if len(r.conds) == 0 {
		return Rule{}, errors.New("rule has no condition")
	}
	r.header = ScopesHeader(r.Scopes)
	return r, nil
}

// parseScopes parses the argument of "scopes".
func parseScopes(arg string) ([]string, error) {
	if arg == "none" {
		return []string{}, nil
	}
	var out []string
	for sc := range strings.SplitSeq(arg, ",") {
		if !validScope(sc) {
			return nil, fmt.Errorf("invalid scope %q: must match [a-z0-9._-]+", truncate(sc, 64))
		}
		dup := false
		for _, have := range out {
			dup = dup || have == sc
		}
		if !dup {
			out = append(out, sc)
		}
	}
	return out, nil
}

// parseCond parses one condition word.
func parseCond(f string) (cond, error) {
	switch f {
	case "jwt":
		return cond{kind: condJWT}, nil
	case "tailnet":
		return cond{kind: condTailnet, values: []string{"own"}}, nil
	case "anyone":
		return cond{kind: condAnyone}, nil
	}
	name, val, ok := strings.Cut(f, ":")
	if !ok {
		return cond{}, fmt.Errorf("unknown condition %q", truncate(f, 64))
	}
	switch name {
	case "user", "tag", "node", "token", "claim", "cap", "tailnet":
	default:
		return cond{}, fmt.Errorf("unknown condition %q", truncate(f, 64))
	}
	if val == "" {
		return cond{}, fmt.Errorf("empty value in %q", truncate(f, 64))
	}
	switch name {
	case "claim":
		path, list, ok := strings.Cut(val, "=")
		if !ok || path == "" || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") || strings.Contains(path, "..") {
			return cond{}, fmt.Errorf("condition %q must be claim:<path>=<value>[,<value>...]", truncate(f, 64))
		}
		vals, err := splitValues(f, list)
		if err != nil {
			return cond{}, err
		}
		return cond{kind: condClaim, path: path, values: vals}, nil
	case "cap":
		if i := strings.IndexByte(val, '{'); i >= 0 {
			capName, inner := val[:i], val[i+1:]
			if capName == "" || !strings.HasSuffix(inner, "}") {
				return cond{}, fmt.Errorf("condition %q must be cap:<name>{<field>=<value>[,<value>...]}", truncate(f, 64))
			}
			inner = inner[:len(inner)-1]
			field, list, ok := strings.Cut(inner, "=")
			if !ok || field == "" || strings.ContainsAny(capName, ",{}") || strings.ContainsAny(field, "{}") {
				return cond{}, fmt.Errorf("condition %q must be cap:<name>{<field>=<value>[,<value>...]}", truncate(f, 64))
			}
			vals, err := splitValues(f, list)
			if err != nil {
				return cond{}, err
			}
			return cond{kind: condCap, path: capName, field: field, values: vals}, nil
		}
		if strings.ContainsAny(val, "{}") {
			return cond{}, fmt.Errorf("condition %q has unbalanced braces", truncate(f, 64))
		}
		vals, err := splitValues(f, val)
		if err != nil {
			return cond{}, err
		}
		return cond{kind: condCap, values: vals}, nil
	}
	vals, err := splitValues(f, val)
	if err != nil {
		return cond{}, err
	}
	c := cond{values: vals}
	switch name {
	case "user":
		c.kind = condUser
		for i, v := range vals {
			v = asciiLower(v)
			if v == "@" || (strings.HasPrefix(v, "@") && strings.Count(v, "@") > 1) {
				return cond{}, fmt.Errorf("invalid domain in %q", truncate(f, 64))
			}
			vals[i] = v
		}
	case "tag":
		c.kind = condTag
		for i, v := range vals {
			if !strings.HasPrefix(v, "tag:") {
				v = "tag:" + v
			}
			if v == "tag:" {
				return cond{}, fmt.Errorf("empty value in %q", truncate(f, 64))
			}
			vals[i] = v
		}
	case "node":
		c.kind = condNode
		for i, v := range vals {
			v = strings.TrimSuffix(v, ".")
			if v == "" || strings.HasPrefix(v, ".") || strings.Contains(v, "..") {
				return cond{}, fmt.Errorf("invalid node name in %q", truncate(f, 64))
			}
			vals[i] = v
		}
	case "tailnet":
		c.kind = condTailnet
		for _, v := range vals {
			if v != "own" && v != "shared" {
				return cond{}, fmt.Errorf("condition %q: want tailnet:own, tailnet:shared or tailnet:own,shared", truncate(f, 64))
			}
		}
	case "token":
		c.kind = condToken
		for _, v := range vals {
			if v == "*" {
				c.any = true
			} else if !validTokenName(v) {
				return cond{}, fmt.Errorf("invalid token name in %q", truncate(f, 64))
			}
		}
	}
	return c, nil
}

// splitValues splits a comma list, refusing empty elements.
func splitValues(f, list string) ([]string, error) {
	if list == "" {
		return nil, fmt.Errorf("empty value in %q", truncate(f, 64))
	}
	vals := strings.Split(list, ",")
	for _, v := range vals {
		if v == "" {
			return nil, fmt.Errorf("empty value in %q", truncate(f, 64))
		}
	}
	return vals, nil
}

// matches reports whether every condition of r holds for id. user is the
// lazily computed Identity.User.
func (r *Rule) matches(id *Identity, u *lazyUser) bool {
	for i := range r.conds {
		if !r.conds[i].matches(id, u) {
			return false
		}
	}
	return true
}

// lazyUser computes Identity.User at most once per decision, and only when
// a user condition is reached.
type lazyUser struct {
	id   *Identity
	done bool
	user string
	ok   bool
}

// get returns the identity's user.
func (u *lazyUser) get() (string, bool) {
	if !u.done {
		u.user, u.ok = u.id.User()
		u.done = true
	}
	return u.user, u.ok
}

// matches reports whether c holds for id.
func (c *cond) matches(id *Identity, u *lazyUser) bool {
	switch c.kind {
	case condAnyone:
		return true
	case condTailnet:
		if !id.OnTailnet {
			return false
		}
		want := "shared"
		if id.OwnTailnet() {
			want = "own"
		}
		return contains(c.values, want)
	case condJWT:
		return id.JWT != nil
	case condUser:
		user, ok := u.get()
		if !ok {
			return false
		}
		for _, v := range c.values {
			if v[0] == '@' {
				at := strings.IndexByte(user, '@')
				if at > 0 && strings.LastIndexByte(user, '@') == at && user[at:] == v {
					return true
				}
			} else if user == v {
				return true
			}
		}
	case condTag:
		if !id.OwnTailnet() {
			return false
		}
		for _, v := range c.values {
			if id.HasTag(v) {
				return true
			}
		}
	case condNode:
		if !id.OnTailnet {
			return false
		}
		for _, v := range c.values {
			if strings.IndexByte(v, '.') >= 0 {
				if id.NodeFQDN != "" && strings.EqualFold(strings.TrimSuffix(id.NodeFQDN, "."), v) {
					return true
				}
			} else if id.Node != "" && id.OwnTailnet() && strings.EqualFold(id.Node, v) {
				return true
			}
		}
	case condToken:
		if id.Token == nil {
			return false
		}
		if c.any {
			return true
		}
		for _, v := range c.values {
			if id.Token.Name == v {
				return true
			}
		}
	case condClaim:
		return id.JWT != nil && claimMatches(id.JWT, c.path, c.values)
	case condCap:
		if !id.OnTailnet || id.Caps == nil {
			return false
		}
		if c.field == "" {
			for _, v := range c.values {
				if _, ok := id.Caps[v]; ok {
					return true
				}
			}
			return false
		}
		grants, ok := id.Caps[c.path]
		return ok && capFieldMatches(grants, c.field, c.values)
	}
	return false
}

// claimMatches reports whether the claim at path equals one of values, is
// an array holding one, or, for the scope claim, is a space-separated list
// holding one.
func claimMatches(cl *Claims, path string, values []string) bool {
	if cl.ScopeClaim != "" && path == cl.ScopeClaim && cl.Scopes != nil {
		return anyIn(cl.Scopes, values)
	}
	v, ok := lookupClaim(cl.Raw, path)
	if !ok {
		return false
	}
	return jsonValueMatches(v, values)
}

// jsonValueMatches reports whether a decoded JSON value is a scalar equal
// to one of values or an array with such a scalar.
func jsonValueMatches(v any, values []string) bool {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if s, ok := scalarString(e); ok && contains(values, s) {
				return true
			}
		}
		return false
	}
	s, ok := scalarString(v)
	return ok && contains(values, s)
}

// scalarString renders a JSON scalar as text for comparison with rule
// values; objects and arrays have no text.
func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	case float64:
		return fmt.Sprint(v), true
	}
	return "", false
}

// capFieldMatches reports whether one of a capability's grant objects has
// field equal to one of values (or an array containing one).
func capFieldMatches(grants []json.RawMessage, field string, values []string) bool {
	for _, g := range grants {
		var obj map[string]json.RawMessage
		if json.Unmarshal(g, &obj) != nil {
			continue
		}
		raw, ok := obj[field]
		if !ok {
			continue
		}
		var v any
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			continue
		}
		if jsonValueMatches(v, values) {
			return true
		}
	}
	return false
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// anyIn reports whether any element of have is in want.
func anyIn(have, want []string) bool {
	for _, h := range have {
		if contains(want, h) {
			return true
		}
	}
	return false
}

// Policy is an ordered list of rules: the first rule that matches decides,
// and a request no rule matches is denied. It is immutable and safe for
// concurrent use. It is the one reading of the rules: the guard decides with
// it, and what the gateway's own config must agree with (the users, tokens
// and scopes the rules admit) is read from it, never from the rule text.
type Policy struct {
	rules     []Rule
	needsCred bool
	needsJWT  bool
}

// RuleError is a rule that does not parse.
type RuleError struct {
	// Index is the rule's position among the rules, from 0.
	Index int
	// Rule is the rule as written.
	Rule string
	// Err says what is wrong with it.
	Err error
}

// Error names the rule by index, e.g. `rules[2]: unknown condition "foo"`.
func (e *RuleError) Error() string { return fmt.Sprintf("rules[%d]: %v", e.Index, e.Err) }

// Unwrap returns what is wrong with the rule.
func (e *RuleError) Unwrap() error { return e.Err }

// NewPolicy parses rules in order. A rule that does not parse is a
// *RuleError.
func NewPolicy(rules []string) (*Policy, error) {
	p := &Policy{rules: make([]Rule, 0, len(rules))}
	for i, s := range rules {
		r, err := ParseRule(s)
		if err != nil {
			return nil, &RuleError{Index: i, Rule: s, Err: err}
		}
		for _, c := range r.conds {
			switch c.kind {
			case condJWT, condClaim:
				p.needsCred = true
				p.needsJWT = true
			case condToken:
				p.needsCred = true
			}
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// NewDevicePolicy parses conditions that must all hold of a device's tailnet
// identity (user:, tag:, node:, cap:, tailnet), as one allow rule whose
// Decide tells whether a device satisfies them. Conditions on a credential
// (token:, jwt, claim:), anyone and scopes are refused: a route chosen by
// them would be chosen by whoever holds the credential.
func NewDevicePolicy(conds []string) (*Policy, error) {
	if len(conds) == 0 {
		return nil, errors.New("no condition")
	}
	for _, c := range conds {
		for _, f := range strings.Fields(c) {
			if strings.HasPrefix(f, "token:") || strings.HasPrefix(f, "claim:") || f == "jwt" || f == "anyone" || f == "scopes" {
				return nil, fmt.Errorf("%q: only tailnet identity conditions (user:, tag:, node:, cap:, tailnet) may choose a route", truncate(c, 64))
			}
		}
	}
	return NewPolicy([]string{"allow " + strings.Join(conds, " ")})
}

// Rules returns the parsed rules; the slice must not be modified.
func (p *Policy) Rules() []Rule { return p.rules }

// NeedsCredential reports whether any rule mentions token, jwt or claim, so
// that the caller knows a bearer credential must be parsed. user: rules can
// also match a credential's user, but only if the caller parsed one.
func (p *Policy) NeedsCredential() bool { return p.needsCred }

// NeedsJWT reports whether any rule, allow or deny, has a jwt or claim:
// condition, so that a JWT verifier must be configured for it to mean
// anything.
func (p *Policy) NeedsJWT() bool { return p.needsJWT }

// Grant is what one allow rule admits by name, and the scopes it grants:
// what a gateway's own lists of users and scopes have to agree with.
type Grant struct {
	// Rule is the rule's Source.
	Rule string
	// Users are the values of the rule's user: conditions, lowercased as
	// they are matched; one starting with '@' stands for a whole domain.
	Users []string
	// Tokens are the names in the rule's token: conditions, as written;
	// "*" stands for any token.
	Tokens []string
	// Other is the first condition that admits callers by something other
	// than a user or token name (such as "tag:ci" or "tailnet"), as
	// written; "" when there is none.
	Other string
	// Scopes is the rule's scope cap.
	Scopes []string
}

// AdmitsToken reports whether the rule's token: conditions name the static
// token called name, or any token; names match exactly, as at the edge. A rule
// with other conditions besides may still refuse that token's caller.
func (g *Grant) AdmitsToken(name string) bool {
	return contains(g.Tokens, "*") || contains(g.Tokens, name)
}

// Grants returns what each allow rule admits, in rule order. Deny rules
// admit no one and have no Grant.
func (p *Policy) Grants() []Grant {
	var out []Grant
	for i := range p.rules {
		r := &p.rules[i]
		if r.Action != Allow {
			continue
		}
		g := Grant{Rule: r.Source, Scopes: slices.Clone(r.Scopes)}
		for _, c := range r.conds {
			switch c.kind {
			case condUser:
				g.Users = append(g.Users, c.values...)
			case condToken:
				g.Tokens = append(g.Tokens, c.values...)
			default:
				if g.Other == "" {
					g.Other = c.src
				}
			}
		}
		out = append(out, g)
	}
	return out
}

// Users returns the users the allow rules name, in rule order and as they
// are matched (lowercase), leaving out whole domains (user:@example.com),
// which no list of names can hold.
func (p *Policy) Users() []string {
	var out []string
	for _, g := range p.Grants() {
		for _, u := range g.Users {
			if !strings.HasPrefix(u, "@") {
				out = append(out, u)
			}
		}
	}
	return out
}

// Decision is the outcome of Policy.Decide.
type Decision struct {
	// Allowed reports whether the request may pass.
	Allowed bool
	// Rule is the index of the matching rule, -1 when none matched.
	Rule int
	// Scopes is the scope cap to forward: the rule's scopes intersected with
	// the credential's scopes when the credential carries any. It may be
	// shared with the policy and must not be modified.
	Scopes []string
	// ScopesHeader is Scopes rendered for x-openclaw-scopes.
	ScopesHeader string
	// Reason is "no_rule", "deny_rule" or "" when allowed.
	Reason string
}

// Decide returns the decision for id: the first matching rule wins and no
// match denies. The scope cap is the rule's scopes, intersected with the
// static token's and the JWT's scopes when those are non-nil.
func (p *Policy) Decide(id *Identity) Decision {
	if id == nil {
		id = &Identity{}
	}
	u := lazyUser{id: id}
	for i := range p.rules {
		r := &p.rules[i]
		if !r.matches(id, &u) {
			continue
		}
		if r.Action == Deny {
			return Decision{Rule: i, Scopes: []string{}, Reason: "deny_rule"}
		}
		scopes := r.Scopes
		if id.Token != nil && id.Token.Scopes != nil {
			scopes = intersect(scopes, id.Token.Scopes)
		}
		if id.JWT != nil && id.JWT.Scopes != nil {
			scopes = intersect(scopes, id.JWT.Scopes)
		}
		header := r.header
		if len(scopes) != len(r.Scopes) {
			header = ScopesHeader(scopes)
		}
		return Decision{Allowed: true, Rule: i, Scopes: scopes, ScopesHeader: header}
	}
	return Decision{Rule: -1, Scopes: []string{}, Reason: "no_rule"}
}

// intersect returns the elements of a that are in b, keeping a's order. It
// returns a itself, without allocating, when all of a is in b.
func intersect(a, b []string) []string {
	all := true
	for _, s := range a {
		if !contains(b, s) {
			all = false
			break
		}
	}
	if all {
		return a
	}
	out := make([]string, 0, len(a))
	for _, s := range a {
		if contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// ScopesHeader renders scopes for x-openclaw-scopes: comma-joined, "" for
// none. For none the caller sends the value the gateway's OpenClaw release
// line reads as no scopes (see package release): an absent header means the
// full operator set.
func ScopesHeader(scopes []string) string {
	switch len(scopes) {
	case 0:
		return ""
	case 1:
		return scopes[0]
	}
	return strings.Join(scopes, ",")
}
