package edge

import (
	"strings"
	"testing"
)

func TestIdentityUser(t *testing.T) {
	tok := &Token{Name: "ci"}
	userTok := &Token{Name: "ops", User: "ops-bot"}
	jwtAlice := &Claims{User: "Alice@IdP.example"}
	tests := []struct {
		name     string
		id       *Identity
		want     string
		wantOK   bool
		wantTags bool
	}{
		{name: "nil", id: nil},
		{name: "nothing", id: &Identity{}},
		{name: "tailnet login", id: &Identity{OnTailnet: true, Login: "  Alice@Example.COM ", Node: "laptop"}, want: "alice@example.com", wantOK: true},
		{name: "login wins over jwt and token", id: &Identity{OnTailnet: true, Login: "bob@example.com", JWT: jwtAlice, Token: tok}, want: "bob@example.com", wantOK: true},
		{name: "jwt wins over token", id: &Identity{JWT: jwtAlice, Token: tok}, want: "alice@idp.example", wantOK: true},
		{name: "token default user", id: &Identity{Token: tok}, want: "token:ci", wantOK: true},
		{name: "token configured user", id: &Identity{Token: userTok}, want: "ops-bot", wantOK: true},
		{name: "tagged device", id: &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "tagged-devices", Node: "CI-Runner", Tags: []string{"tag:ci"}}, want: "node:ci-runner", wantOK: true, wantTags: true},
		{name: "tagged device with login ignores login", id: &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "alice@example.com", Node: "ci", Tags: []string{"tag:ci"}}, want: "node:ci", wantOK: true, wantTags: true},
		{name: "tagged-devices login without tags", id: &Identity{OnTailnet: true, Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Login: "tagged-devices", Node: "ci"}, want: "node:ci", wantOK: true, wantTags: true},
		{name: "tagged device with token uses token", id: &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci", Tags: []string{"tag:ci"}, Token: tok}, want: "token:ci", wantOK: true, wantTags: true},
		{name: "tagged device with jwt uses jwt", id: &Identity{OnTailnet: true, Node: "ci", Tags: []string{"tag:ci"}, JWT: jwtAlice}, want: "alice@idp.example", wantOK: true, wantTags: true},
		{name: "tags ignored off tailnet", id: &Identity{Login: "alice@example.com", Tags: []string{"tag:ci"}, Node: "x"}},
		{name: "login with comma", id: &Identity{OnTailnet: true, Login: "alice@example.com,admin"}},
		{name: "login with newline", id: &Identity{OnTailnet: true, Login: "alice@example.com\nx-openclaw-scopes: operator.admin"}},
		{name: "login with NUL", id: &Identity{OnTailnet: true, Login: "alice\x00@example.com"}},
		{name: "login with DEL", id: &Identity{OnTailnet: true, Login: "alice\x7f@example.com"}},
		{name: "login with invalid utf-8", id: &Identity{OnTailnet: true, Login: "alice\xff@example.com"}},
		{name: "login with bidi override", id: &Identity{OnTailnet: true, Login: "alice\u202e@example.com"}},
		{name: "login non-ascii kept", id: &Identity{OnTailnet: true, Login: "Zoë@Example.com"}, want: "zoë@example.com", wantOK: true},
		{name: "login 256 bytes", id: &Identity{OnTailnet: true, Login: strings.Repeat("a", 244) + "@example.com"}, want: strings.Repeat("a", 244) + "@example.com", wantOK: true},
		{name: "login 257 bytes", id: &Identity{OnTailnet: true, Login: strings.Repeat("a", 245) + "@example.com"}},
		{name: "invalid login does not fall through to the token", id: &Identity{OnTailnet: true, Login: "a,b", Token: tok}},
		{name: "jwt user with comma", id: &Identity{JWT: &Claims{User: "a,b"}}},
		{name: "jwt user spelled as a node", id: &Identity{JWT: &Claims{User: "Node:ci-runner"}}},
		{name: "jwt user spelled as a token", id: &Identity{JWT: &Claims{User: "token:ci"}, Token: tok}},
		{name: "blank jwt user falls to token", id: &Identity{JWT: &Claims{User: ""}, Token: tok}, want: "token:ci", wantOK: true},
		{name: "tagged device without node", id: &Identity{OnTailnet: true, Tags: []string{"tag:ci"}}, wantTags: true},
		{name: "tagged device of another tailnet is named in full", id: &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci", NodeFQDN: "CI.other.ts.net", Tailnet: "other.ts.net", HomeTailnet: "t.ts.net", Tags: []string{"tag:ci"}}, want: "node:ci.other.ts.net", wantOK: true, wantTags: true},
		{name: "tagged device of an unknown tailnet is named in full", id: &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci", NodeFQDN: "ci.t.ts.net", Tags: []string{"tag:ci"}}, want: "node:ci.t.ts.net", wantOK: true, wantTags: true},
		{name: "tagged device of another tailnet without a full name", id: &Identity{OnTailnet: true, Login: "tagged-devices", Node: "ci", Tailnet: "other.ts.net", HomeTailnet: "t.ts.net", Tags: []string{"tag:ci"}}, wantTags: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.id.User()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("User() = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
			if tagged := tt.id.IsTagged(); tagged != tt.wantTags {
				t.Errorf("IsTagged() = %v, want %v", tagged, tt.wantTags)
			}
		})
	}
}

func TestAsciiLowerNoAllocation(t *testing.T) {
	s := "alice@example.com"
	if n := testing.AllocsPerRun(100, func() { _ = asciiLower(s) }); n != 0 {
		t.Errorf("asciiLower(lowercase) allocated %v times", n)
	}
	if got := asciiLower("ÀBC"); got != "Àbc" {
		t.Errorf("asciiLower(ÀBC) = %q, want %q", got, "Àbc")
	}
}
