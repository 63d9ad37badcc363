package setup

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDerive(t *testing.T) {
	tests := []struct {
		name      string
		in        Input
		want      Edge
		wantNotes []string // substrings, one per note, in order
		wantErr   string
	}{
		{
			name: "users, tokens and scopes",
			in: Input{Guards: []Guard{{
				Port: 18789,
				Rules: []string{
					"deny user:mallory@example.com",
					"allow user:Alice@Example.com,bob@example.com scopes operator.read",
					"allow user:alice@example.com tag:laptop scopes operator.write,operator.admin",
					"allow token:ci scopes operator.read,operator.write",
					"allow token:* scopes operator.pairing",
				},
				Tokens: []Token{{Name: "ci", Scopes: []string{"operator.read"}}, {Name: "deploy", User: "Deploy-Bot"}},
			}}, Origins: []string{"https://GW.tail1234.ts.net/"}, Gated: true},
			want: Edge{
				UserHeader: "x-forwarded-user", RequiredHeaders: []string{"x-forwarded-proto", "x-forwarded-host"},
				Users: []string{"alice@example.com", "bob@example.com", "deploy-bot", "token:ci"},
				Scopes: map[string][]string{
					"alice@example.com": {"operator.admin", "operator.read", "operator.write"},
					"bob@example.com":   {"operator.read"},
					"token:ci":          {"operator.read"},
					"deploy-bot":        {"operator.pairing"},
				},
				AutoApproveScopes: []string{"operator.pairing", "operator.read", "operator.write"},
				Origins:           []string{"https://gw.tail1234.ts.net"},
				Port:              18789,
			},
		},
		{
			name: "rules that do not name users are noted",
			in: Input{Guards: []Guard{{
				UserHeader: "X-Remote-User",
				Rules:      []string{"allow tailnet scopes operator.read", "allow user:@example.com scopes operator.write", "allow tag:ci token:ci"},
				Tokens:     []Token{{Name: "ci"}},
			}}, SiteOrigins: []string{"https://gw.tail1234.ts.net"}},
			want: Edge{
				UserHeader: "x-remote-user", RequiredHeaders: []string{"x-forwarded-proto", "x-forwarded-host"},
				Users:             []string{"token:ci"},
				Scopes:            map[string][]string{},
				AutoApproveScopes: nil,
				Origins:           []string{"https://gw.tail1234.ts.net"},
			},
			wantNotes: []string{"admits callers by tailnet", "admits a whole domain (@example.com)"},
		},
		{
			// The guard matches token names exactly, so a rule naming a token
			// in another case admits no such token and grants it nothing.
			name: "token names match exactly",
			in: Input{Guards: []Guard{{
				Rules:  []string{"allow token:CI scopes operator.write", "allow token:ci,deploy scopes operator.read"},
				Tokens: []Token{{Name: "ci"}, {Name: "Deploy"}},
			}}, Origins: []string{"https://gw.tail1234.ts.net"}},
			want: Edge{
				UserHeader: "x-forwarded-user", RequiredHeaders: []string{"x-forwarded-proto", "x-forwarded-host"},
				Users:             []string{"token:ci", "token:deploy"},
				Scopes:            map[string][]string{"token:ci": {"operator.read"}},
				AutoApproveScopes: []string{"operator.read"},
				Origins:           []string{"https://gw.tail1234.ts.net"},
			},
		},
		{
			name: "unknown scopes are left out",
			in:   Input{Guards: []Guard{{Rules: []string{"allow user:a@b.c scopes operator.read,custom.thing"}}}, Upstream: 19789, Gated: true},
			want: Edge{
				UserHeader: "x-forwarded-user", RequiredHeaders: []string{"x-forwarded-proto", "x-forwarded-host"},
				Users: []string{"a@b.c"}, Scopes: map[string][]string{"a@b.c": {"operator.read"}},
				AutoApproveScopes: []string{"operator.read"}, Port: 19789,
			},
			wantNotes: []string{`scope "custom.thing"`, "no Control UI origin"},
		},
		{
			name: "guard port differs from the gate's default",
			in:   Input{Guards: []Guard{{Port: 19789, Rules: []string{"allow user:a@b.c"}}}, Origins: []string{"https://x.ts.net"}, Gated: true},
			want: Edge{
				UserHeader: "x-forwarded-user", RequiredHeaders: []string{"x-forwarded-proto", "x-forwarded-host"},
				Users: []string{"a@b.c"}, Scopes: map[string][]string{}, Origins: []string{"https://x.ts.net"}, Port: 19789,
			},
			wantNotes: []string{"add `upstream 127.0.0.1:19789`"},
		},
		{
			name:    "two user headers",
			in:      Input{Guards: []Guard{{Rules: []string{"allow tailnet"}}, {UserHeader: "x-user", Rules: []string{"allow tailnet"}}}},
			wantErr: "different headers",
		},
		{
			name:    "two ports",
			in:      Input{Guards: []Guard{{Port: 1, Rules: []string{"allow tailnet"}}, {Port: 2, Rules: []string{"allow tailnet"}}}},
			wantErr: "different ports",
		},
		{
			name:    "bad rule",
			in:      Input{Guards: []Guard{{Rules: []string{"allow frobnicate"}}}},
			wantErr: `rule 1 "allow frobnicate"`,
		},
		{
			name:    "no guards",
			in:      Input{Gated: true},
			wantErr: "no clawgate guard",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Derive(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Derive = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Derive: %v", err)
			}
			notes := got.Notes
			got.Notes = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Derive =\n%+v\nwant\n%+v", got, tt.want)
			}
			if len(notes) != len(tt.wantNotes) {
				t.Fatalf("notes = %q, want %d", notes, len(tt.wantNotes))
			}
			for i, w := range tt.wantNotes {
				if !strings.Contains(notes[i], w) {
					t.Errorf("note %d = %q, want it to contain %q", i, notes[i], w)
				}
			}
			if !slices.IsSorted(got.Users) {
				t.Errorf("users not sorted: %q", got.Users)
			}
		})
	}
}
