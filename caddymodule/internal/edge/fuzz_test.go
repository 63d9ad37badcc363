package edge

import (
	"crypto"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func FuzzParseRule(f *testing.F) {
	for _, tt := range parseRuleTests {
		f.Add(tt.in)
	}
	ids := []*Identity{
		nil,
		{OnTailnet: true, Login: "alice@example.com", Node: "n", Tailnet: "t.ts.net", HomeTailnet: "t.ts.net", Tags: []string{"tag:ci"},
			Caps: map[string][]json.RawMessage{"example.com/cap/openclaw": raws(`{"role":["operator"]}`, `1`)}},
		{Token: &Token{Name: "ci", Scopes: []string{"operator.read"}}},
		{JWT: &Claims{User: "u", Scopes: []string{"a"}, ScopeClaim: "scope", Raw: map[string]any{"role": "x", "realm": map[string]any{"roles": []any{"x"}}}}},
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if len(r.conds) == 0 {
			t.Fatalf("ParseRule(%q) accepted a rule with no condition", s)
		}
		for _, sc := range r.Scopes {
			if !validScope(sc) {
				t.Fatalf("ParseRule(%q) accepted scope %q", s, sc)
			}
		}
		// The normalised source parses to the same rule.
		again, err := ParseRule(r.Source)
		if err != nil || again.Action != r.Action || !slices.Equal(again.Scopes, r.Scopes) || len(again.conds) != len(r.conds) {
			t.Fatalf("ParseRule(%q).Source = %q does not round-trip: %v", s, r.Source, err)
		}
		p := &Policy{rules: []Rule{r}}
		for _, id := range ids {
			d := p.Decide(id)
			if d.Allowed && r.Action != Allow {
				t.Fatalf("deny rule %q allowed %+v", s, id)
			}
			if d.Allowed && len(d.Scopes) > len(r.Scopes) {
				t.Fatalf("rule %q granted %q, more than its scopes", s, d.Scopes)
			}
		}
		checkPolicyAnswers(t, s, r)
	})
}

// checkPolicyAnswers compares what a policy of the one rule r (parsed from
// s) answers about it with a plain reading of its normalised text, word by
// word: the users, tokens and first other condition of an allow rule, and
// whether it needs a JWT.
func checkPolicyAnswers(t *testing.T, s string, r Rule) {
	t.Helper()
	p, err := NewPolicy([]string{s})
	if err != nil {
		t.Fatalf("NewPolicy(%q) = %v, but ParseRule accepted it", s, err)
	}
	var want Grant
	needsJWT := false
	words := strings.Fields(r.Source)
	for _, w := range words[1:] {
		if w == "scopes" {
			break
		}
		if w == "jwt" || strings.HasPrefix(w, "claim:") {
			needsJWT = true
		}
		switch {
		case strings.HasPrefix(w, "user:"):
			for _, u := range strings.Split(w[len("user:"):], ",") {
				want.Users = append(want.Users, asciiLower(u))
			}
		case strings.HasPrefix(w, "token:"):
			want.Tokens = append(want.Tokens, strings.Split(w[len("token:"):], ",")...)
		default:
			if want.Other == "" {
				want.Other = w
			}
		}
	}
	if got := p.NeedsJWT(); got != needsJWT {
		t.Fatalf("NeedsJWT(%q) = %v, its words say %v", s, got, needsJWT)
	}
	grants := p.Grants()
	if r.Action != Allow {
		if len(grants) != 0 || len(p.Users()) != 0 {
			t.Fatalf("deny rule %q has grants %+v", s, grants)
		}
		return
	}
	if len(grants) != 1 {
		t.Fatalf("Grants(%q) = %d grants, want 1", s, len(grants))
	}
	g := grants[0]
	if g.Rule != r.Source || !slices.Equal(g.Users, want.Users) || !slices.Equal(g.Tokens, want.Tokens) || g.Other != want.Other || !slices.Equal(g.Scopes, r.Scopes) {
		t.Fatalf("Grants(%q) = %+v, its words say %+v with scopes %q", s, g, want, r.Scopes)
	}
	var users []string
	for _, u := range want.Users {
		if !strings.HasPrefix(u, "@") {
			users = append(users, u)
		}
	}
	if got := p.Users(); !slices.Equal(got, users) {
		t.Fatalf("Users(%q) = %q, want %q", s, got, users)
	}
}

func FuzzVerifyJWT(f *testing.F) {
	fx := fixture()
	cfg := allAlgsConfig()
	cfg.KeysByID = map[string]crypto.PublicKey{"ed-1": fx.ed.Public()}
	v, err := NewJWTVerifier(cfg)
	if err != nil {
		f.Fatal(err)
	}
	// signed holds the signing input (header.payload) of every token minted
	// with the verifier's keys: nothing else may ever verify.
	signed := map[string]bool{}
	add := func(tok string) {
		signed[tok[:strings.LastIndexByte(tok, '.')]] = true
		f.Add(tok)
	}
	for _, m := range []struct {
		method jwt.SigningMethod
		key    any
	}{
		{jwt.SigningMethodHS256, fx.hs}, {jwt.SigningMethodHS384, fx.hs}, {jwt.SigningMethodHS512, fx.hs},
		{jwt.SigningMethodRS256, fx.rsa}, {jwt.SigningMethodES256, fx.ec}, {jwt.SigningMethodEdDSA, fx.ed},
	} {
		add(sign(f, m.method, m.key, baseClaims(), nil))
		add(sign(f, m.method, m.key, with(map[string]any{"scope": []string{"a", "b"}, "kid": "x"}), map[string]any{"kid": "ed-1"}))
		add(sign(f, m.method, m.key, with(map[string]any{"exp": nil}), nil))
		add(sign(f, m.method, m.key, baseClaims(), map[string]any{"jku": "https://x"}))
	}
	// Tokens from keys the verifier does not hold, and malformed shapes.
	f.Add(sign(f, jwt.SigningMethodHS256, fx.hsOther, baseClaims(), nil))
	f.Add(sign(f, jwt.SigningMethodEdDSA, fx.edOther, baseClaims(), nil))
	f.Add(sign(f, jwt.SigningMethodHS256, pemPublic(f, &fx.rsa.PublicKey), baseClaims(), nil))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, baseClaims(), nil) + "AA")
	f.Add(rawToken(f, `{"alg":"None"}`, baseClaims(), []byte("x")))
	f.Add(strings.Repeat(".", 5000))
	f.Add("a.b.c")
	f.Add("")

	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok, testNow)
		if err != nil {
			if c != nil {
				t.Fatalf("Verify() returned claims with error %v", err)
			}
			return
		}
		i := strings.LastIndexByte(tok, '.')
		if i < 0 || !signed[tok[:i]] {
			t.Fatalf("Verify() accepted a token not minted with the keys: %q", tok)
		}
		if c.User == "" || c.Expires.IsZero() {
			t.Fatalf("Verify() accepted claims without user or exp: %+v", c)
		}
	})
}

// oracleNorm lowercases ASCII letters byte by byte (header names are
// ASCII tokens; strings.ToLower would fold invalid UTF-8 into U+FFFD) and
// maps '_' and '.' to '-'.
func oracleNorm(s string) string {
	b := []byte(strings.NewReplacer("_", "-", ".", "-").Replace(s))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c | 0x20
		}
	}
	return string(b)
}

// protectedOracle is an independent statement of which names the guard
// removes, written with plain string operations.
func protectedOracle(name string, extra []string) bool {
	n := oracleNorm(name)
	switch n {
	case "forwarded", "x-real-ip", "x-openclaw-scopes", "x-client-ip", "true-client-ip", "cf-connecting-ip", "x-original-forwarded-for", "x-forwarded":
		return true
	}
	if strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "tailscale-") {
		return true
	}
	for _, e := range extra {
		if e = oracleNorm(strings.TrimSpace(e)); e != "" && e == n {
			return true
		}
	}
	return false
}

func FuzzCleanRequestHeaders(f *testing.F) {
	f.Add("X-Forwarded-For\nx_forwarded_for\nX.Forwarded.User\nAccept", "x-forwarded-user", "close, x-openclaw-scopes")
	f.Add("Tailscale-User-Login\nTAILSCALE_USER_NAME\nForwarded\nX-Real-Ip\nCookie", "X_Required.Header", "Upgrade")
	f.Add("X-Openclaw-Scopes\nx.openclaw.scopes\nx-openclaw-scopesx\nconnection", "", "keep-alive, X-Forwarded-User, upgrade")
	f.Add("Cf-Connecting-Ip\nTrue-Client-Ip\nX-Client-Ip\nX-Original-Forwarded-For\nX-Required-Header", "x-required-header\nx-forwarded-user", "")
	f.Add("Authorization\nX-Forwarded-User\nAccept", "", "keep-alive")
	f.Add("authorization\nAuthorization\nX_Real_IP", "authorization", "Upgrade")
	f.Fuzz(func(t *testing.T, names, extras, conn string) {
		extra := strings.Split(extras, "\n")
		h := http.Header{}
		for _, n := range strings.Split(names, "\n") {
			h[n] = append(h[n], "v1, v2", "v3")
		}
		h["Connection"] = []string{conn}
		orig := h.Clone()
		before := len(h)
		wantRemoved := 0
		for n := range h {
			if protectedOracle(n, extra) {
				wantRemoved++
			}
		}
		removed := CleanRequestHeaders(h, extra)
		if removed != wantRemoved {
			t.Fatalf("CleanRequestHeaders() = %d, oracle says %d", removed, wantRemoved)
		}
		// CleanBearer is BearerToken on the headers as they came, then Clean.
		wantTok, wantErr := BearerToken(orig.Clone())
		h2 := orig.Clone()
		tok, removed2, err := NewHeaderCleaner(extra).CleanBearer(h2)
		if tok != wantTok || (err == nil) != (wantErr == nil) || removed2 != removed || !reflect.DeepEqual(h2, h) {
			t.Fatalf("CleanBearer() = %q, %d, %v; BearerToken and Clean give %q, %d, %v (headers %v vs %v)", tok, removed2, err, wantTok, removed, wantErr, h2, h)
		}
		for n := range h {
			if protectedOracle(n, extra) {
				t.Fatalf("protected header %q left after cleaning", n)
			}
			if strings.EqualFold(n, "connection") && n != "Connection" {
				t.Fatalf("non-canonical %q left after cleaning", n)
			}
		}
		for _, v := range h["Connection"] {
			for tok := range strings.SplitSeq(v, ",") {
				// Any case: a value that already lists only allowed tokens
				// is kept as the client sent it.
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "upgrade", "keep-alive", "close":
				default:
					t.Fatalf("Connection token %q left after cleaning", tok)
				}
			}
		}
		if len(h) > before-removed {
			t.Fatalf("cleaning added headers: %d before, %d removed, %d after", before, removed, len(h))
		}
		// Headers set afterwards survive a second cleaning of client input
		// only if the caller does not clean again; here we check that the
		// guard's own headers are well-formed after cleaning.
		if err := SetForwardHeaders(h, Forward{ClientIP: netip.MustParseAddr("100.64.0.1"), Proto: "https", Host: "h", UserHeader: "x-forwarded-user", User: "u"}); err != nil {
			t.Fatalf("SetForwardHeaders() error = %v", err)
		}
		if got := h["X-Openclaw-Scopes"]; len(got) != 1 || got[0] != "" {
			t.Fatalf("X-Openclaw-Scopes = %q after SetForwardHeaders, want one empty value", got)
		}
	})
}

func FuzzBearerToken(f *testing.F) {
	for _, tt := range bearerTokenTests {
		for _, v := range tt.h {
			f.Add(strings.Join(v, "\n"))
		}
	}
	f.Fuzz(func(t *testing.T, vals string) {
		h := http.Header{"Authorization": strings.Split(vals, "\n")}
		tok, err := BearerToken(h)
		if err != nil {
			if tok != "" {
				t.Fatalf("BearerToken() = %q with error %v", tok, err)
			}
			if strings.Contains(err.Error(), vals) && len(vals) > 12 {
				t.Fatalf("BearerToken() error %q contains the header", err)
			}
			return
		}
		if len(h["Authorization"]) != 1 {
			t.Fatalf("BearerToken() accepted %d values", len(h["Authorization"]))
		}
		if tok == "" {
			t.Fatalf("BearerToken() = \"\" without error for %q", vals)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] >= 0x7f {
				t.Fatalf("BearerToken() = %q has byte %#x", tok, tok[i])
			}
		}
		if !strings.EqualFold(vals, "bearer "+tok) {
			t.Fatalf("BearerToken(%q) = %q, not the header's token", vals, tok)
		}
	})
}

func FuzzQueryCredential(f *testing.F) {
	for _, tt := range queryCredentialTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := QueryCredential(q)
		// Whatever Go's own query parser finds as a credential name must be
		// flagged: an upstream using it would otherwise see the credential.
		if vals, err := url.ParseQuery(q); err == nil {
			for k := range vals {
				n := strings.ToLower(strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.TrimSpace(k)))
				switch n {
				case "accesstoken", "token", "idtoken", "jwt", "auth", "authorization", "bearer", "apikey", "key", "password", "secret":
					if !got {
						t.Fatalf("QueryCredential(%q) = false, but url.ParseQuery finds %q", q, k)
					}
				}
			}
		}
		// Adding parameters never hides one.
		if got && !QueryCredential("a=1&"+q+"&b=2") {
			t.Fatalf("QueryCredential(%q) = true but false with neighbours", q)
		}
	})
}
