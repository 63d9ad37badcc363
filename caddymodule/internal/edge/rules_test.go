package edge

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

var parseRuleTests = []struct {
	in         string
	wantAction Action
	wantScopes []string
	wantConds  int
	wantErr    string
}{
	{in: "allow anyone", wantAction: Allow, wantScopes: []string{}, wantConds: 1},
	{in: "  deny   tag:ci  ", wantAction: Deny, wantScopes: []string{}, wantConds: 1},
	{in: "allow user:alice@example.com,@example.org tag:ci scopes operator.read,operator.write", wantAction: Allow, wantScopes: []string{"operator.read", "operator.write"}, wantConds: 2},
	{in: "allow tailnet scopes none", wantAction: Allow, wantScopes: []string{}, wantConds: 1},
	{in: "allow jwt claim:realm.roles=operator,admin scopes operator.read,operator.read", wantAction: Allow, wantScopes: []string{"operator.read"}, wantConds: 2},
	{in: "allow cap:example.com/cap/openclaw{role=operator,admin}", wantAction: Allow, wantScopes: []string{}, wantConds: 1},
	{in: "allow cap:example.com/cap/a,example.com/cap/b", wantAction: Allow, wantScopes: []string{}, wantConds: 1},
	{in: "allow token:* node:alice-laptop tag:tag:ci", wantAction: Allow, wantScopes: []string{}, wantConds: 3},
	{in: "allow tailnet:own,shared node:ci-bot.tail1234.ts.net.", wantAction: Allow, wantScopes: []string{}, wantConds: 2},
	{in: "allow tailnet:shared", wantAction: Allow, wantScopes: []string{}, wantConds: 1},

	{in: "", wantErr: "empty rule"},
	{in: "   ", wantErr: "empty rule"},
	{in: "permit anyone", wantErr: `rule must start with allow or deny, not "permit"`},
	{in: "Allow anyone", wantErr: "rule must start with allow or deny"},
	{in: "allow", wantErr: "rule has no condition"},
	{in: "allow scopes operator.read", wantErr: "rule has no condition"},
	{in: "allow foo:bar", wantErr: `unknown condition "foo:bar"`},
	{in: "allow foo", wantErr: `unknown condition "foo"`},
	{in: "allow jwt:x", wantErr: `unknown condition "jwt:x"`},
	{in: "allow tailnet:", wantErr: `empty value in "tailnet:"`},
	{in: "allow tailnet:all", wantErr: `condition "tailnet:all": want tailnet:own, tailnet:shared or tailnet:own,shared`},
	{in: "allow tailnet:Own", wantErr: `want tailnet:own, tailnet:shared`},
	{in: "allow tailnet:own,", wantErr: `empty value in "tailnet:own,"`},
	{in: "allow node:.ts.net", wantErr: `invalid node name in "node:.ts.net"`},
	{in: "allow node:a..ts.net", wantErr: `invalid node name`},
	{in: "allow node:.", wantErr: `invalid node name`},
	{in: "allow everyone", wantErr: `unknown condition "everyone"`},
	{in: "allow user:", wantErr: `empty value in "user:"`},
	{in: "allow user:a@b.c,,d@e.f", wantErr: `empty value in "user:a@b.c,,d@e.f"`},
	{in: "allow user:a@b.c,", wantErr: `empty value in "user:a@b.c,"`},
	{in: "allow user:@", wantErr: "invalid domain"},
	{in: "allow user:@a@b.c", wantErr: "invalid domain"},
	{in: "allow tag:", wantErr: `empty value in "tag:"`},
	{in: "allow tag:tag:", wantErr: `empty value in "tag:tag:"`},
	{in: "allow token:c i", wantErr: `unknown condition "i"`},
	{in: "allow token:a/b", wantErr: "invalid token name"},
	{in: "allow claim:role", wantErr: "must be claim:<path>=<value>"},
	{in: "allow claim:=x", wantErr: "must be claim:<path>=<value>"},
	{in: "allow claim:a..b=x", wantErr: "must be claim:<path>=<value>"},
	{in: "allow claim:role=", wantErr: `empty value in "claim:role="`},
	{in: "allow cap:x{role=a", wantErr: "must be cap:<name>{<field>=<value>"},
	{in: "allow cap:{role=a}", wantErr: "must be cap:<name>{<field>=<value>"},
	{in: "allow cap:x{=a}", wantErr: "must be cap:<name>{<field>=<value>"},
	{in: "allow cap:x{role=}", wantErr: "empty value"},
	{in: "allow cap:x}", wantErr: "unbalanced braces"},
	{in: "allow anyone scopes", wantErr: "scopes needs a list or none"},
	{in: "allow anyone scopes a b", wantErr: `unexpected "b" after scopes`},
	{in: "allow anyone scopes Operator.Admin", wantErr: `invalid scope "Operator.Admin"`},
	{in: "allow anyone scopes a,,b", wantErr: `invalid scope ""`},
	{in: "allow anyone scopes a;b", wantErr: `invalid scope "a;b"`},
	{in: "deny anyone scopes operator.read", wantErr: "deny rule cannot grant scopes"},
}

func TestParseRule(t *testing.T) {
	tests := parseRuleTests
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRule(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRule(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRule(%q) error = %v", tt.in, err)
			}
			if got.Action != tt.wantAction || !slices.Equal(got.Scopes, tt.wantScopes) || got.Scopes == nil || len(got.conds) != tt.wantConds {
				t.Errorf("ParseRule(%q) = %v %#v (%d conds), want %v %#v (%d conds)", tt.in, got.Action, got.Scopes, len(got.conds), tt.wantAction, tt.wantScopes, tt.wantConds)
			}
			if got.Source != strings.Join(strings.Fields(tt.in), " ") {
				t.Errorf("ParseRule(%q).Source = %q", tt.in, got.Source)
			}
		})
	}
}

func TestNewPolicyErrorNamesIndex(t *testing.T) {
	_, err := NewPolicy([]string{"allow anyone", "deny tag:ci", "allow  foo"})
	if err == nil || err.Error() != `rules[2]: unknown condition "foo"` {
		t.Errorf("NewPolicy() error = %v, want %q", err, `rules[2]: unknown condition "foo"`)
	}
	re, ok := errors.AsType[*RuleError](err)
	if !ok || re.Index != 2 || re.Rule != "allow  foo" || re.Err == nil || re.Err.Error() != `unknown condition "foo"` {
		t.Errorf("NewPolicy() error = %#v, want a *RuleError for rule 2 as written", err)
	}
}

func TestNewDevicePolicy(t *testing.T) {
	tests := []struct {
		conds   []string
		wantErr string
	}{
		{conds: []string{"user:alice@example.com"}},
		{conds: []string{"tag:ci", "node:ci-bot", "cap:example.com/cap/x", "tailnet:own,shared"}},
		{conds: nil, wantErr: "no condition"},
		{conds: []string{"user:a@b.c", "token:ci"}, wantErr: `"token:ci": only tailnet identity conditions`},
		{conds: []string{"jwt"}, wantErr: `"jwt": only tailnet identity conditions`},
		{conds: []string{"claim:role=x"}, wantErr: `"claim:role=x": only tailnet identity conditions`},
		{conds: []string{"anyone"}, wantErr: `"anyone": only tailnet identity conditions`},
		// One element holding several words is read word by word.
		{conds: []string{"user:a@b.c scopes operator.admin"}, wantErr: `"user:a@b.c scopes operator.admin": only tailnet identity conditions`},
		{conds: []string{"user:a@b.c token:"}, wantErr: `only tailnet identity conditions`},
		{conds: []string{"frob"}, wantErr: `unknown condition "frob"`},
	}
	for _, tt := range tests {
		p, err := NewDevicePolicy(tt.conds)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewDevicePolicy(%q) error = %v, want %q", tt.conds, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("NewDevicePolicy(%q) error = %v", tt.conds, err)
		}
		if g := p.Grants(); len(g) != 1 || len(p.Rules()) != 1 {
			t.Errorf("NewDevicePolicy(%q) = %d rules, want one allow rule", tt.conds, len(p.Rules()))
		}
	}
	p, err := NewDevicePolicy([]string{"user:alice@example.com", "tailnet"})
	if err != nil {
		t.Fatal(err)
	}
	alice := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@example.com"}
	if d := p.Decide(alice); !d.Allowed {
		t.Errorf("Decide(alice) = %+v, want allowed", d)
	}
	if d := p.Decide(&Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "bob@example.com"}); d.Allowed {
		t.Errorf("Decide(bob) = %+v, want refused: every condition must hold", d)
	}
}

func TestNeedsJWT(t *testing.T) {
	tests := []struct {
		rules []string
		want  bool
	}{
		{[]string{"allow tailnet", "allow token:ci"}, false},
		{[]string{"allow jwt"}, true},
		{[]string{"deny claim:role=guest", "allow tailnet"}, true},
		// Words that only look like conditions are values, not conditions.
		{[]string{"allow user:jwt@example.com", "allow cap:example.com/claim:x"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		p, err := NewPolicy(tt.rules)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.NeedsJWT(); got != tt.want {
			t.Errorf("NeedsJWT(%q) = %v, want %v", tt.rules, got, tt.want)
		}
	}
}

func TestGrants(t *testing.T) {
	p, err := NewPolicy([]string{
		"deny user:eve@example.com",
		"allow  user:Alice@Example.com,@Example.org   tag:ci scopes operator.read,operator.write",
		"allow token:ci,Deploy scopes operator.read",
		"allow tailnet:shared node:x jwt",
		"allow token:*",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Grant{
		{Rule: "allow user:Alice@Example.com,@Example.org tag:ci scopes operator.read,operator.write",
			Users: []string{"alice@example.com", "@example.org"}, Other: "tag:ci", Scopes: []string{"operator.read", "operator.write"}},
		{Rule: "allow token:ci,Deploy scopes operator.read", Tokens: []string{"ci", "Deploy"}, Scopes: []string{"operator.read"}},
		{Rule: "allow tailnet:shared node:x jwt", Other: "tailnet:shared", Scopes: []string{}},
		{Rule: "allow token:*", Tokens: []string{"*"}, Scopes: []string{}},
	}
	got := p.Grants()
	if len(got) != len(want) {
		t.Fatalf("Grants() = %d grants, want %d: %#v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Rule != w.Rule || !slices.Equal(g.Users, w.Users) || !slices.Equal(g.Tokens, w.Tokens) || g.Other != w.Other || !slices.Equal(g.Scopes, w.Scopes) {
			t.Errorf("Grants()[%d] = %#v, want %#v", i, g, w)
		}
	}
	// A grant is a copy: changing it leaves the policy alone.
	got[0].Scopes[0] = "operator.admin"
	if sc := p.Rules()[1].Scopes; !slices.Equal(sc, []string{"operator.read", "operator.write"}) {
		t.Errorf("after changing a Grant, the rule's scopes = %q", sc)
	}

	for _, tt := range []struct {
		grant int
		token string
		want  bool
	}{
		{1, "ci", true}, {1, "Deploy", true}, {1, "deploy", false}, {1, "other", false},
		{3, "anything", true}, {0, "ci", false},
	} {
		if got := got[tt.grant].AdmitsToken(tt.token); got != tt.want {
			t.Errorf("Grants()[%d].AdmitsToken(%q) = %v, want %v", tt.grant, tt.token, got, tt.want)
		}
	}

	if got, want := p.Users(), []string{"alice@example.com"}; !slices.Equal(got, want) {
		t.Errorf("Users() = %q, want %q (deny rules and domains left out)", got, want)
	}
}

func TestNeedsCredential(t *testing.T) {
	tests := []struct {
		rules []string
		want  bool
	}{
		{[]string{"allow tailnet", "allow user:@example.com"}, false},
		{[]string{"allow tailnet", "allow token:ci"}, true},
		{[]string{"allow jwt"}, true},
		{[]string{"deny claim:role=guest", "allow tailnet"}, true},
		{nil, false},
	}
	for _, tt := range tests {
		p, err := NewPolicy(tt.rules)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.NeedsCredential(); got != tt.want {
			t.Errorf("NeedsCredential(%q) = %v, want %v", tt.rules, got, tt.want)
		}
	}
}

// raws turns JSON literals into capability grants.
func raws(js ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(js))
	for i, j := range js {
		out[i] = json.RawMessage(j)
	}
	return out
}

func TestDecide(t *testing.T) {
	alice := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "Alice@Example.com", Node: "alice-laptop",
		Caps: map[string][]json.RawMessage{
			"example.com/cap/openclaw": raws(`{"role":"viewer"}`, `{"role":["operator","x"]}`),
			"example.com/cap/plain":    nil,
		}}
	bob := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "bob@example.org", Node: "bob-phone",
		Caps: map[string][]json.RawMessage{"example.com/cap/openclaw": raws(`{"role":"viewer"}`, `"operator"`, `not json`)}}
	multiAt := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@evil.test@example.com", Node: "m"}
	dotDomain := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "eve@notexample.com", Node: "e"}
	ci := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "tagged-devices", Node: "ci-runner", Tags: []string{"tag:ci"}}
	ciLoginSpoof := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@example.com", Node: "ci-runner", Tags: []string{"tag:ci"}}
	offTailnet := &Identity{}
	ciToken := &Identity{Token: &Token{Name: "ci", Scopes: []string{"operator.read"}}}
	opsToken := &Identity{Token: &Token{Name: "ops"}}
	jwtOp := &Identity{JWT: &Claims{User: "carol@idp.test", Scopes: []string{"operator.write", "operator.read"}, ScopeClaim: "scope",
		Raw: map[string]any{"sub": "carol@idp.test", "role": "operator", "level": json.Number("3"), "admin": true,
			"realm": map[string]any{"roles": []any{"x", "auditor"}}, "scope": "operator.write operator.read", "odd.name": "y"}}}
	jwtNoScopes := &Identity{JWT: &Claims{User: "dave@idp.test", Raw: map[string]any{"sub": "dave@idp.test", "role": "guest"}}}
	tokenOnTailnet := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@example.com", Node: "alice-laptop", Token: &Token{Name: "ci", Scopes: []string{"operator.read", "operator.write"}}}

	policy := []string{
		/* 0 */ "deny node:quarantine",
		/* 1 */ "allow user:alice@example.com scopes operator.admin,operator.read",
		/* 2 */ "allow user:@example.org cap:example.com/cap/openclaw{role=operator} scopes operator.write",
		/* 3 */ "allow tag:ci token:ci scopes operator.read,operator.write",
		/* 4 */ "allow tag:ci scopes none",
		/* 5 */ "allow token:ops scopes operator.read",
		/* 6 */ "allow jwt claim:role=operator claim:realm.roles=auditor scopes operator.read,operator.write,operator.admin",
		/* 7 */ "allow claim:role=guest",
		/* 8 */ "allow token:* scopes operator.approvals,operator.read",
	}
	p, err := NewPolicy(policy)
	if err != nil {
		t.Fatalf("NewPolicy() error = %v", err)
	}

	tests := []struct {
		name       string
		policy     []string
		id         *Identity
		wantAllow  bool
		wantRule   int
		wantScopes []string
		wantReason string
	}{
		{name: "login equals, case-insensitive", id: alice, wantAllow: true, wantRule: 1, wantScopes: []string{"operator.admin", "operator.read"}},
		{name: "domain rule, cap field only in non-object grants", id: bob, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "multi-@ login never matches a domain", policy: []string{"allow user:@example.com"}, id: multiAt, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "multi-@ login matches exact value", policy: []string{"allow user:alice@evil.test@example.com"}, id: multiAt, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "domain suffix is not a domain", policy: []string{"allow user:@example.com"}, id: dotDomain, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "domain match", policy: []string{"allow user:@EXAMPLE.com"}, id: alice, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "tagged device without token", id: ci, wantAllow: true, wantRule: 4, wantScopes: []string{}},
		{name: "tagged device login is not a user", id: ciLoginSpoof, wantAllow: true, wantRule: 4, wantScopes: []string{}},
		{name: "tag alone off tailnet", policy: []string{"allow tag:ci"}, id: &Identity{Tags: []string{"tag:ci"}}, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "tag:tag: spelling", policy: []string{"allow tag:tag:ci"}, id: ci, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "tag case-insensitive", policy: []string{"allow tag:CI"}, id: ci, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "token alone, scopes capped by token", id: ciToken, wantAllow: true, wantRule: 8, wantScopes: []string{"operator.read"}},
		{name: "token with nil scopes", id: opsToken, wantAllow: true, wantRule: 5, wantScopes: []string{"operator.read"}},
		{name: "jwt with claims, scopes intersected", id: jwtOp, wantAllow: true, wantRule: 6, wantScopes: []string{"operator.read", "operator.write"}},
		{name: "jwt without scope claim gets rule scopes", id: jwtNoScopes, wantAllow: true, wantRule: 7, wantScopes: []string{}},
		{name: "nothing", id: offTailnet, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "nil identity", id: nil, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "deny rule first", id: &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@example.com", Node: "Quarantine"}, wantAllow: false, wantRule: 0, wantReason: "deny_rule"},
		{name: "empty policy denies", policy: []string{}, id: alice, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "anyone", policy: []string{"allow anyone scopes operator.read"}, id: offTailnet, wantAllow: true, wantRule: 0, wantScopes: []string{"operator.read"}},
		{name: "tailnet", policy: []string{"allow tailnet"}, id: ci, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "tailnet off tailnet", policy: []string{"allow tailnet"}, id: ciToken, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "node", policy: []string{"allow node:x,Alice-Laptop"}, id: alice, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "node off tailnet", policy: []string{"allow node:alice-laptop"}, id: &Identity{Node: "alice-laptop"}, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "cap presence", policy: []string{"allow cap:example.com/cap/none,example.com/cap/plain"}, id: alice, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "cap absent", policy: []string{"allow cap:example.com/cap/plain"}, id: bob, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "cap field scalar", policy: []string{"allow cap:example.com/cap/openclaw{role=viewer}"}, id: bob, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "cap field array", policy: []string{"allow cap:example.com/cap/openclaw{role=admin,operator}"}, id: alice, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "cap field non-object grant ignored", policy: []string{"allow cap:example.com/cap/openclaw{role=operator}"}, id: bob, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "cap off tailnet", policy: []string{"allow cap:example.com/cap/plain"}, id: &Identity{Caps: alice.Caps}, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "claim number", policy: []string{"allow claim:level=3"}, id: jwtOp, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "claim bool", policy: []string{"allow claim:admin=true"}, id: jwtOp, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "claim dotted name", policy: []string{"allow claim:odd.name=y"}, id: jwtOp, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "claim scope list element", policy: []string{"allow claim:scope=operator.read"}, id: jwtOp, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "claim scope second element", policy: []string{"allow claim:scope=operator.write"}, id: jwtOp, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "claim value mismatch", policy: []string{"allow claim:role=admin"}, id: jwtOp, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "claim object never matches", policy: []string{"allow claim:realm=x"}, id: jwtOp, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "claim without jwt", policy: []string{"allow claim:role=operator"}, id: ciToken, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "user matches jwt user", policy: []string{"allow user:carol@idp.test"}, id: jwtOp, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "user matches token default user", policy: []string{"allow user:token:ci"}, id: ciToken, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "user matches tagged node", policy: []string{"allow user:node:ci-runner"}, id: ci, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "conditions are ANDed", policy: []string{"allow user:alice@example.com token:ci scopes operator.read,operator.admin"}, id: alice, wantAllow: false, wantRule: -1, wantReason: "no_rule"},
		{name: "ANDed with token, scopes intersected", policy: []string{"allow user:alice@example.com token:ci scopes operator.admin,operator.write"}, id: tokenOnTailnet, wantAllow: true, wantRule: 0, wantScopes: []string{"operator.write"}},
		{name: "token scopes empty means none", policy: []string{"allow token:* scopes operator.read"}, id: &Identity{Token: &Token{Name: "x", Scopes: []string{}}}, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "first match wins over later deny", policy: []string{"allow tailnet", "deny node:alice-laptop"}, id: alice, wantAllow: true, wantRule: 0, wantScopes: []string{}},
		{name: "invalid login fails user cond", policy: []string{"allow user:a@example.com", "allow tailnet"}, id: &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "a@example.com,b"}, wantAllow: true, wantRule: 1, wantScopes: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := p
			if tt.policy != nil {
				var err error
				if pol, err = NewPolicy(tt.policy); err != nil {
					t.Fatalf("NewPolicy(%q) error = %v", tt.policy, err)
				}
			}
			got := pol.Decide(tt.id)
			if got.Allowed != tt.wantAllow || got.Rule != tt.wantRule || got.Reason != tt.wantReason {
				t.Errorf("Decide() = %+v, want allowed %v rule %d reason %q", got, tt.wantAllow, tt.wantRule, tt.wantReason)
			}
			want := tt.wantScopes
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got.Scopes, want) || got.Scopes == nil {
				t.Errorf("Decide().Scopes = %#v, want %#v", got.Scopes, want)
			}
		})
	}
}

func TestDecideNoAllocation(t *testing.T) {
	p, err := NewPolicy([]string{
		"deny node:quarantine",
		"allow user:@example.org scopes operator.read",
		"allow user:alice@example.com scopes operator.read,operator.write",
	})
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@example.com", Node: "alice-laptop"}
	var d Decision
	if n := testing.AllocsPerRun(100, func() { d = p.Decide(id) }); n != 0 {
		t.Errorf("Decide() allocated %v times on the allow path, want 0", n)
	}
	if !d.Allowed || d.Rule != 2 {
		t.Errorf("Decide() = %+v, want allowed by rule 2", d)
	}
	// A credential whose scopes cover the rule's also needs no copy.
	id.Token = &Token{Name: "ci", Scopes: []string{"operator.write", "operator.read", "operator.admin"}}
	if n := testing.AllocsPerRun(100, func() { d = p.Decide(id) }); n != 0 {
		t.Errorf("Decide() with covering token scopes allocated %v times, want 0", n)
	}
}

func TestScopesHeader(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{}, ""},
		{[]string{"operator.read"}, "operator.read"},
		{[]string{"operator.read", "operator.write"}, "operator.read,operator.write"},
	}
	for _, tt := range tests {
		if got := ScopesHeader(tt.in); got != tt.want {
			t.Errorf("ScopesHeader(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDecideForeignTailnet: a device whose WhoIs answer names another tailnet
// (a device of a tailnet this node was shared into) is not "tailnet", and
// its short node name and tags are that tailnet's, not ours.
func TestDecideForeignTailnet(t *testing.T) {
	foreign := &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci-bot", Tailnet: "other.ts.net", Tags: []string{"tag:ci"}}
	foreignUser := &Identity{OnTailnet: true, Login: "mallory@other.example", Node: "alice-laptop", Tailnet: "other.ts.net"}
	tests := []struct {
		name   string
		policy string
		id     *Identity
	}{
		{"tailnet", "allow tailnet", foreign},
		{"tailnet, user device", "allow tailnet", foreignUser},
		{"short node name", "allow node:ci-bot", foreign},
		{"short node name of a user device", "allow node:alice-laptop", foreignUser},
		{"tag", "allow tag:ci", foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPolicy([]string{tt.policy})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Decide(tt.id); got.Allowed {
				t.Errorf("Decide(%+v) under %q = %+v, want denied", tt.id, tt.policy, got)
			}
		})
	}
}

// TestDecideSharedIn: devices of this node's own tailnet and of a tailnet it
// was shared into, as WhoIs answers name them, under each form of the
// tailnet and node conditions. The test control server cannot share a node
// into another tailnet, so the identities are written out here as the
// guard builds them from WhoIs (Tailnet from the peer's name, HomeTailnet
// from the accepting node's).
func TestDecideSharedIn(t *testing.T) {
	own := &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci-bot", NodeFQDN: "ci-bot.home.ts.net",
		Tailnet: "home.ts.net", HomeTailnet: "home.ts.net", Tags: []string{"tag:ci"}}
	shared := &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci-bot", NodeFQDN: "ci-bot.other.ts.net",
		Tailnet: "other.ts.net", HomeTailnet: "home.ts.net", Tags: []string{"tag:ci"},
		Caps: map[string][]json.RawMessage{"example.com/cap/openclaw": nil}}
	sharedUser := &Identity{OnTailnet: true, Login: "mallory@other.example", Node: "laptop", NodeFQDN: "laptop.other.ts.net",
		Tailnet: "other.ts.net", HomeTailnet: "home.ts.net"}
	unknownHome := &Identity{OnTailnet: true, Login: "alice@example.com", Node: "laptop", NodeFQDN: "laptop.home.ts.net", Tailnet: "home.ts.net"}
	noName := &Identity{OnTailnet: true, Login: "alice@example.com", Node: "laptop", HomeTailnet: "home.ts.net"}
	caseOnly := &Identity{OnTailnet: true, Login: "alice@example.com", Node: "laptop", NodeFQDN: "Laptop.Home.TS.net", Tailnet: "Home.TS.net", HomeTailnet: "home.ts.net"}
	tests := []struct {
		policy string
		id     *Identity
		want   bool
	}{
		{"allow tailnet", own, true},
		{"allow tailnet", shared, false},
		{"allow tailnet", unknownHome, false},
		{"allow tailnet", noName, false},
		{"allow tailnet", caseOnly, true},
		{"allow tailnet:own", own, true},
		{"allow tailnet:own", shared, false},
		{"allow tailnet:shared", own, false},
		{"allow tailnet:shared", shared, true},
		{"allow tailnet:shared", sharedUser, true},
		{"allow tailnet:shared", unknownHome, true},
		{"allow tailnet:own,shared", own, true},
		{"allow tailnet:own,shared", shared, true},
		{"allow tailnet:shared", &Identity{Login: "x@example.com"}, false},
		{"allow node:ci-bot", own, true},
		{"allow node:ci-bot", shared, false},
		{"allow node:CI-BOT", own, true},
		{"allow node:ci-bot.home.ts.net", own, true},
		{"allow node:ci-bot.home.ts.net.", own, true},
		{"allow node:ci-bot.home.ts.net", shared, false},
		{"allow node:ci-bot.other.ts.net", shared, true},
		{"allow node:ci-bot.other.ts.net", own, false},
		{"allow node:ci-bot.other", shared, false},
		{"allow node:laptop", noName, false},
		{"allow node:laptop.home.ts.net", caseOnly, true},
		{"allow tag:ci", own, true},
		{"allow tag:ci", shared, false},
		{"allow tailnet:shared tag:ci", shared, false},
		{"allow cap:example.com/cap/openclaw", shared, true},
		{"allow user:mallory@other.example", sharedUser, true},
		{"allow tailnet:shared user:mallory@other.example", sharedUser, true},
		{"allow tailnet user:mallory@other.example", sharedUser, false},
	}
	for _, tt := range tests {
		p, err := NewPolicy([]string{tt.policy})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Decide(tt.id); got.Allowed != tt.want {
			t.Errorf("Decide(%s, node %q of %q, home %q) under %q = %v, want %v", tt.id.Login, tt.id.NodeFQDN, tt.id.Tailnet, tt.id.HomeTailnet, tt.policy, got.Allowed, tt.want)
		}
	}
}
